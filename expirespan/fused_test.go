package expirespan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/torchrt"
)

// fusedCase is one comparison of the fused attention with the composed path.
type fusedCase struct {
	name          string
	b, mem, t     int     // streams, memory keys, queries
	expire        bool    // learned spans
	window        int     // > 0: queries see keys at distance ≤ window only
	shorten       float64 // random shortening (a fraction of L; 0: none)
	dropout       float64 // attention dropout (train)
	integerSpans  bool    // spans on whole numbers: remaining spans exactly on the ramp's edges
	blindStream   bool    // the last stream's spans are so short that some queries see no key
	chunk         int64   // queries per block of the fused path's work (0: its own choice)
	noInitialKeys bool    // no memory: the first query sees no key at all
}

// fusedRun is what one path gives: the output, the span loss and every gradient.
type fusedRun struct {
	out, loss []float32
	grads     map[string][]float32
}

func runAttention(t *testing.T, c fusedCase, fused bool) fusedRun {
	t.Helper()
	const d, heads, p, maxSpan, ramp = 8, 2, 6, 24.0, 4.0
	torchrt.Seed(21)
	vs := nn.NewVarStore(gotch.CPU)
	a := NewAttention(vs.Root(), Config{Dim: d, Heads: heads, PosWindow: p, Expire: c.expire, Window: c.window, MaxSpan: maxSpan,
		Ramp: ramp, Alpha: 0.7, PreDiv: 1, InitFrac: 0.3, Dropout: c.dropout})
	n := c.mem + c.t
	rng := rand.New(rand.NewPCG(uint64(c.b), 7))
	// Ages: the memory's fall by 1 to 3 per slot down to 1, then the block's 0, −1, ….
	ages := make([]float32, 0, c.b*n)
	for s := 0; s < c.b; s++ {
		row := make([]float32, c.mem)
		age := float32(0)
		if c.blindStream && s == c.b-1 {
			age = 8 // beyond a short span's ramp: the block's first query sees no key
		}
		for i := c.mem - 1; i >= 0; i-- {
			age += float32(1 + rng.IntN(3))
			row[i] = age
		}
		ages = append(ages, row...)
		for j := 0; j < c.t; j++ {
			ages = append(ages, float32(-j))
		}
	}
	spans := make([]float32, c.b*n)
	for i := range spans {
		spans[i] = float32(rng.Float64() * maxSpan)
		if c.integerSpans {
			spans[i] = float32(math.Round(float64(spans[i])))
		}
		if c.blindStream && i >= (c.b-1)*n {
			spans[i] = float32(rng.Float64() * 0.5)
		}
	}
	x := ts.MustRandn([]int64{int64(c.b), int64(n), d}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, true)
	pos := ts.MustRandn([]int64{d / heads, p}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, true)
	e := ts.MustOfSlice(spans).MustView([]int64{int64(c.b), int64(n)}, true).MustSetRequiresGrad(true, true)
	weights := ts.MustRandn([]int64{int64(c.b), int64(c.t), d}, gotch.Float, gotch.CPU)
	var ep *ts.Tensor
	if c.expire {
		ep = e
	}
	h := x.MustNarrow(1, int64(c.mem), int64(c.t), false)
	k, v := a.KeysValues(x)
	torchrt.Seed(99) // both paths draw the dropout seed from here
	var out, loss *ts.Tensor
	if fused {
		old := fusedChunk
		fusedChunk = c.chunk
		defer func() { fusedChunk = old }()
		out, loss = a.AttendFused(h, k, v, pos, ep, ages, c.b, c.t, c.shorten, c.dropout > 0, c.expire)
	} else {
		mk := a.BuildMasks(ep, ages, c.b, c.t, c.shorten)
		out = a.Attend(h, k, v, pos, mk, c.dropout > 0)
		if c.expire {
			loss = a.SpanLoss(mk, c.t)
		}
		mk.Drop()
	}
	total := out.MustMul(weights, false).MustSum(gotch.Float, true)
	if loss != nil {
		total = total.MustAdd(loss, true)
	}
	total.MustBackward()
	r := fusedRun{out: torchrt.Float32s(out), grads: map[string][]float32{}}
	if loss != nil {
		r.loss = torchrt.Float32s(loss)
	}
	named := map[string]*ts.Tensor{"x": x, "pos": pos, "wq": a.Wq, "wk": a.Wk, "wv": a.Wv, "wo": a.Wo}
	if c.expire {
		named["spans"] = e
	}
	for name, tn := range named {
		r.grads[name] = torchrt.Float32s(tn.MustGrad(false))
	}
	return r
}

// closeTo reports the largest difference of got from want, and whether it is within
// 1e-5 of want's scale (its largest magnitude, at least 1).
func closeTo(got, want []float32) (float64, bool) {
	if len(got) != len(want) {
		return math.Inf(1), false
	}
	d, scale := 0.0, 1.0
	for i := range got {
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
		scale = math.Max(scale, math.Abs(float64(want[i])))
	}
	return d, d <= 1e-5*scale
}

// The fused attention gives the composed path's output, span loss and gradients (of the
// queries', keys' and values' projections and input, the spans and the position table) to
// 1e-5, in every case that the composed path handles specially.
func TestFusedMatchesComposed(t *testing.T) {
	defer torchrt.Lock()()
	cases := []fusedCase{
		{name: "batch 1", b: 1, mem: 12, t: 20, expire: true},
		{name: "batch 3", b: 3, mem: 12, t: 20, expire: true},
		{name: "chunks of 16", b: 3, mem: 12, t: 40, expire: true, chunk: 16},
		{name: "shortening", b: 2, mem: 10, t: 20, expire: true, shorten: 0.4, chunk: 16},
		{name: "ramp edges", b: 2, mem: 10, t: 20, expire: true, integerSpans: true},
		{name: "queries that see no key", b: 3, mem: 6, t: 20, expire: true, blindStream: true},
		{name: "no memory", b: 2, mem: 0, t: 20, expire: true, noInitialKeys: true},
		{name: "dropout", b: 3, mem: 12, t: 40, expire: true, dropout: 0.3, chunk: 16},
		{name: "dropout, one block", b: 2, mem: 12, t: 40, expire: true, dropout: 0.3},
		{name: "no expiry", b: 2, mem: 12, t: 20},
		{name: "no expiry, dropout", b: 2, mem: 12, t: 36, dropout: 0.2, chunk: 16},
		{name: "window", b: 2, mem: 12, t: 36, window: 12, chunk: 16},
		{name: "window, dropout", b: 3, mem: 12, t: 20, window: 5, dropout: 0.2},
	}
	worst := map[string]float64{}
	for _, c := range cases {
		ref := runAttention(t, c, false)
		got := runAttention(t, c, true)
		check := func(what string, g, w []float32) {
			d, ok := closeTo(g, w)
			worst[what] = math.Max(worst[what], d)
			if !ok {
				t.Errorf("%s: %s differs by %g", c.name, what, d)
			}
		}
		check("output", got.out, ref.out)
		if c.expire {
			check("span loss", got.loss, ref.loss)
			if ref.loss[0] == 0 {
				t.Errorf("%s: span loss 0: no key is inside its ramp", c.name)
			}
		}
		for name, g := range ref.grads {
			check("grad "+name, got.grads[name], g)
			if maxAbsDiff(g, make([]float32, len(g))) == 0 {
				t.Errorf("%s: the gradient of %s is 0: the case tests nothing", c.name, name)
			}
		}
		if c.dropout > 0 {
			off := c
			off.dropout = 0
			if maxAbsDiff(runAttention(t, off, false).out, ref.out) == 0 {
				t.Errorf("%s: dropout changed nothing", c.name)
			}
		}
		if c.blindStream || c.noInitialKeys {
			// Some query must see nothing: its output row is exactly zero in both paths.
			zero := false
			for r := 0; r*8 < len(ref.out); r++ {
				row := ref.out[r*8 : r*8+8]
				if fmt.Sprint(row) == fmt.Sprint(make([]float32, 8)) {
					zero = true
				}
			}
			if !zero {
				t.Errorf("%s: every query sees a key: the case tests nothing", c.name)
			}
		}
	}
	t.Logf("largest differences over all cases: %v", worst)
}

// Dropout really drops: with dropout on, training outputs differ from evaluation ones,
// and the kept share of weights is about 1 − p.
func TestGroupDropoutStatistics(t *testing.T) {
	defer torchrt.Lock()()
	torchrt.Seed(5)
	ones := ts.MustOnes([]int64{4, 2, 37, 50}, gotch.Float, gotch.CPU)
	d := groupDropout(ones, 0.3, 1234, false)
	vals := torchrt.Float32s(d)
	kept := 0
	for _, v := range vals {
		switch {
		case v == 0:
		case math.Abs(float64(v)-1/0.7) < 1e-6:
			kept++
		default:
			t.Fatalf("dropout value %v: want 0 or 1/(1−p)", v)
		}
	}
	share := float64(kept) / float64(len(vals))
	if math.Abs(share-0.7) > 0.02 {
		t.Fatalf("kept %.3f of the weights, want 0.7", share)
	}
	// The same seed draws the same mask; another seed another one.
	again := torchrt.Float32s(groupDropout(ones, 0.3, 1234, false))
	other := torchrt.Float32s(groupDropout(ones, 0.3, 1235, false))
	if fmt.Sprint(again) != fmt.Sprint(vals) {
		t.Fatal("the same seed drew another mask")
	}
	if fmt.Sprint(other) == fmt.Sprint(vals) {
		t.Fatal("another seed drew the same mask")
	}
}

// Under bf16 autocast (the precision key) the fused attention runs in float32 inside and
// gives float32 gradients close to the plain run's.
func TestFusedUnderAutocast(t *testing.T) {
	defer torchrt.Lock()()
	c := fusedCase{b: 2, mem: 12, t: 20, expire: true}
	plain := runAttention(t, c, true)
	end, err := torchrt.Autocast(gotch.CPU, gotch.BFloat16)
	if err != nil {
		t.Fatal(err)
	}
	mixed := runAttention(t, c, true)
	end()
	if d := maxAbsDiff(mixed.out, plain.out); d > 0.1 || d == 0 {
		t.Fatalf("bf16 output differs from float32 by %g: want a bf16 rounding (0 < d ≤ 0.1)", d)
	}
	for name, g := range plain.grads {
		if len(mixed.grads[name]) != len(g) {
			t.Fatalf("gradient of %s: %d values, want %d", name, len(mixed.grads[name]), len(g))
		}
	}
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}
