package expirespan

import (
	"fmt"
	"math"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/torchrt"
)

func set(t *ts.Tensor, vals []float32) {
	src := ts.MustOfSlice(vals).MustView(t.MustSize(), true)
	func() { defer torchrt.NoGrad()(); t.Copy_(src) }()
	src.MustDrop()
}

func approx(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > 1e-5*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %v, want %v (all: %v)", what, i, got[i], want[i], got)
		}
	}
}

func testAttention(t *testing.T, p0 float64) *Attention {
	t.Helper()
	vs := nn.NewVarStore(gotch.CPU)
	return NewAttention(vs.Root(), Config{Dim: 2, Heads: 1, PosWindow: 2, Expire: true, MaxSpan: 10, Ramp: 2, Alpha: 1, PreDiv: 2, InitFrac: p0})
}

// Span e = L·σ(x·w/pre_div + b), by hand: x = (2, 0), w = (0.5, −0.25), b = 0, pre_div 2
// gives z = 0.5 and e = 10·σ(0.5) = 6.2246; x = (0, 4) gives z = −0.5, e = 3.7754.
func TestSpansByHand(t *testing.T) {
	defer torchrt.Lock()()
	a := testAttention(t, 0.5)
	set(a.SpanW, []float32{0.5, -0.25})
	x := ts.MustOfSlice([]float32{2, 0, 0, 4}).MustView([]int64{1, 2, 2}, true)
	e := torchrt.Float32s(a.Spans(x))
	approx(t, "spans", e, []float64{10 / (1 + math.Exp(-0.5)), 10 / (1 + math.Exp(0.5))})
	// The initial bias gives every key the span p0·L.
	b := testAttention(t, 0.1)
	approx(t, "initial spans", torchrt.Float32s(b.Spans(x)), []float64{1, 1})
}

// One memory key of age 2 and a block of two tokens (ages 0, −1), every span e = 1, ramp
// R = 2. Distances δ_ji = j + C_i are j=0: (2, 0, −1), j=1: (3, 1, 0); r = e − δ; the mask
// is clamp(1 + r/R, 0, 1) on keys strictly earlier than the query.
func TestMaskAndSpanLossByHand(t *testing.T) {
	defer torchrt.Lock()()
	a := testAttention(t, 0.1)
	e := ts.MustOfSlice([]float32{1, 1, 1}).MustView([]int64{1, 3}, true)
	c := []float32{2, 0, -1}

	mk := a.BuildMasks(e, c, 1, 2, 0)
	approx(t, "r", torchrt.Float32s(mk.R), []float64{-1, 1, 2, -2, 0, 1})
	approx(t, "mask", torchrt.Float32s(mk.M), []float64{0.5, 0, 0, 0, 1, 0})
	approx(t, "log mask", torchrt.Float32s(mk.LogM), []float64{math.Log(0.5), -1e30, -1e30, -1e30, 0, -1e30})
	// Position window P = 2: column P − δ for 1 ≤ δ ≤ 2.
	// Position window P = 2: column P − δ for 1 ≤ δ ≤ 2, column P (zeros) otherwise.
	if mk.PosFrom != 0 {
		t.Fatalf("position term from slot %d, want 0 (every key has age ≤ P)", mk.PosFrom)
	}
	if idx := mk.PosIdx.Int64Values(); fmt.Sprint(idx) != "[0 2 2 2 1 2]" {
		t.Fatalf("position columns %v, want [0 2 2 2 1 2]", idx)
	}
	// Keys older than P get no position term: with ages (9, 5, 0, −1) only the last two
	// slots are looked at.
	c4 := []float32{9, 5, 0, -1}
	e4 := ts.MustOfSlice([]float32{1, 1, 1, 1}).MustView([]int64{1, 4}, true)
	if mk4 := a.BuildMasks(e4, c4, 1, 2, 0); mk4.PosFrom != 2 {
		t.Fatalf("position term from slot %d, want 2", mk4.PosFrom)
	}
	// Only (j=0, i=0) is inside the ramp (0 < m < 1), with r = −1:
	// α/(R·T·B) · Σ r = 1/(2·2·1) · (−1).
	approx(t, "span loss", torchrt.Float32s(a.SpanLoss(mk, 2)), []float64{-0.25})

	// Random shortening to u·L = 0.05·10 = 0.5: r = 0.5 − δ, mask (0.25, 0, 0 | 0, 0.75, 0),
	// span loss (−1.5 − 0.5)/4.
	mk2 := a.BuildMasks(e, c, 1, 2, 0.05)
	approx(t, "shortened mask", torchrt.Float32s(mk2.M), []float64{0.25, 0, 0, 0, 0.75, 0})
	approx(t, "shortened span loss", torchrt.Float32s(a.SpanLoss(mk2, 2)), []float64{-0.5})
}

// With one key allowed per query, attention returns that key's value exactly, whatever
// the scores; the renormalisation a·m/(Σa·m) gives weight m/m = 1.
func TestAttendPicksTheOnlyLiveKey(t *testing.T) {
	defer torchrt.Lock()()
	a := testAttention(t, 0.1)
	set(a.Wq, []float32{1, 0, 0, 1})
	set(a.Wk, []float32{1, 0, 0, 1})
	set(a.Wv, []float32{1, 0, 0, 1})
	set(a.Wo, []float32{1, 0, 0, 1})
	x := ts.MustOfSlice([]float32{1, 2, 3, 4, 5, 6}).MustView([]int64{1, 3, 2}, true)
	h := x.MustNarrow(1, 1, 2, false)
	e := ts.MustOfSlice([]float32{1, 1, 1}).MustView([]int64{1, 3}, true)
	c := []float32{2, 0, -1}
	mk := a.BuildMasks(e, c, 1, 2, 0)
	k, v := a.KeysValues(x)
	pos := ts.MustRandn([]int64{2, 2}, gotch.Float, gotch.CPU)
	out := torchrt.Float32s(a.Attend(h, k, v, pos, mk, false))
	// Query 0 sees only key 0 (mask 0.5), query 1 only key 1.
	approx(t, "output", out, []float64{1, 2, 3, 4})
}

func TestDeadRule(t *testing.T) {
	// e − (c + t) + R ≤ 0: span 10, ramp 4, block 8: dead from age 6 on.
	for c, want := range map[int64]bool{5: false, 6: true, 7: true} {
		if got := dead(10, c, 8, 4); got != want {
			t.Errorf("dead(e=10, c=%d, t=8, R=4) = %v, want %v", c, got, want)
		}
	}
}

// Two streams, memory of 6 keys + a block of 2, block length 2. Stream 0 has 5 dead
// memory keys, stream 1 has 3: the batch minimum 3 rounds down to 2, and each stream
// drops its first 2 dead keys.
func TestRectangularRule(t *testing.T) {
	const n, memLen, tt = 8, 6, 2
	ages := []float32{9, 8, 7, 6, 5, 4, 0, -1, 9, 8, 7, 6, 5, 4, 0, -1}
	// Dead iff e − (c + 2) + 1 ≤ 0, i.e. e ≤ c + 1.
	spans := []float32{
		1, 50, 1, 1, 1, 1, 1, 1, // stream 0: dead at 0, 2, 3, 4, 5 (the block's keys never)
		50, 1, 50, 1, 50, 1, 1, 1, // stream 1: dead at 1, 3, 5
	}
	keep := keepIndices(Pruning{Rule: Rectangular, Ramp: 1, Block: 2}, 2, n, memLen, tt, ages, spans)
	want := [][]int{{1, 3, 4, 5, 6, 7}, {0, 2, 4, 5, 6, 7}}
	for s := range want {
		if len(keep[s]) != len(want[s]) {
			t.Fatalf("stream %d keeps %v, want %v", s, keep[s], want[s])
		}
		for i := range want[s] {
			if keep[s][i] != want[s][i] {
				t.Fatalf("stream %d keeps %v, want %v", s, keep[s], want[s])
			}
		}
	}
	// Per key, one stream: every dead memory key goes.
	per := keepIndices(Pruning{Rule: PerKey, Ramp: 1, Block: 2}, 1, n, memLen, tt, ages[:n], spans[:n])
	if len(per[0]) != 3 || per[0][0] != 1 || per[0][1] != 6 || per[0][2] != 7 {
		t.Fatalf("per-key keeps %v, want [1 6 7]", per[0])
	}
	// The baseline keeps the last L.
	last := keepIndices(Pruning{Rule: LastL, Ramp: 1, Block: 2, Last: 5}, 1, n, memLen, tt, ages[:n], spans[:n])
	if len(last[0]) != 5 || last[0][0] != 3 {
		t.Fatalf("last-L keeps %v, want [3 4 5 6 7]", last[0])
	}
}

// The gradient that reaches the span predictor (through the soft mask inside the softmax
// and through the span loss) matches a finite difference of the same function. The mask is
// piecewise linear in the spans, so the step stays small enough not to cross its kinks.
func TestSpanGradientMatchesFiniteDifference(t *testing.T) {
	defer torchrt.Lock()()
	torchrt.Seed(3)
	vs := nn.NewVarStore(gotch.CPU)
	a := NewAttention(vs.Root(), Config{Dim: 8, Heads: 2, PosWindow: 4, Expire: true, MaxSpan: 12, Ramp: 3, Alpha: 0.5, PreDiv: 1, InitFrac: 0.3})
	w := ts.MustRandn([]int64{8, 1}, gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(0.5), true)
	func() { defer torchrt.NoGrad()(); a.SpanW.Copy_(w) }()
	x := ts.MustRandn([]int64{2, 10, 8}, gotch.Float, gotch.CPU)
	h := x.MustNarrow(1, 6, 4, false)
	ages := []float32{9, 7, 4, 1, 0, -1, -2, -3, 0, 0, 12, 8, 5, 2, 1, 0, -1, -2, -3, 0}
	// Per stream: six memories then the block (0, −1, −2, −3); stream 0's last two slots
	// repeat the block pattern's start, which is harmless for the function under test.
	pos := ts.MustRandn([]int64{4, 4}, gotch.Float, gotch.CPU)
	weights := ts.MustRandn([]int64{2, 4, 8}, gotch.Float, gotch.CPU)
	loss := func() *ts.Tensor {
		e := a.Spans(x)
		mk := a.BuildMasks(e, ages, 2, 4, 0)
		k, v := a.KeysValues(x)
		out := a.Attend(h, k, v, pos, mk, false)
		l := out.MustMul(weights, true).MustSum(gotch.Float, true).MustAdd(a.SpanLoss(mk, 4), true)
		mk.Drop()
		return l
	}
	l := loss()
	l.MustBackward()
	got := a.SpanB.MustGrad(false).Float64Values()[0]
	const step = 2e-3
	shift := func(d float64) float64 {
		var v float64
		func() {
			defer torchrt.NoGrad()()
			a.SpanB.MustAdd_(ts.MustOfSlice([]float32{float32(d)}))
			v = loss().Float64Values()[0]
		}()
		return v
	}
	up := shift(step)
	down := shift(-2 * step)
	shift(step)
	want := (up - down) / (2 * step)
	t.Logf("autograd %.6f, finite difference %.6f", got, want)
	if math.Abs(got-want) > 0.03*math.Abs(want)+1e-3 {
		t.Fatalf("d loss / d span bias: autograd %.6f, finite difference %.6f", got, want)
	}
	if math.Abs(want) < 1e-3 {
		t.Fatalf("the span bias hardly moves the loss (%.2g): the test sees nothing", want)
	}
}
