package lm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/expirespan"
	"xspan/internal/torchrt"
)

// testConfig is a model small enough for exact comparisons in milliseconds, with spans
// short enough that memories expire within a few blocks.
func testConfig() Config {
	c, _ := Preset("tiny")
	c.Vocab, c.Layers, c.Dim, c.Heads, c.FFN = 13, 2, 16, 2, 32
	c.Block, c.MaxSpan, c.Ramp, c.InitFrac = 8, 24, 4, 0.3
	c.Batch = 3
	c.Attention = testAttention
	return c
}

// testAttention is the attention path of testConfig; bothPaths runs a test with each.
var testAttention = AttentionComposed

// bothPaths runs test once with the composed attention and once with the fused one.
func bothPaths(t *testing.T, test func(t *testing.T)) {
	for _, path := range []string{AttentionComposed, AttentionFused} {
		testAttention = path
		t.Run(path, test)
	}
	testAttention = AttentionComposed
}

func tokens(n, vocab int, seed uint64) []int64 {
	ids := make([]int64, n)
	x := seed*2654435761 + 1
	for i := range ids {
		x = x*6364136223846793005 + 1442695040888963407
		ids[i] = int64((x >> 33) % uint64(vocab))
	}
	return ids
}

func tensor2(ids []int64, b, t int) *ts.Tensor {
	return ts.MustOfSlice(ids).MustView([]int64{int64(b), int64(t)}, true)
}

// newModel builds a model and gives its span predictors random weights, so that spans
// differ from key to key and many memories expire.
func newModel(t *testing.T, cfg Config, seed int64) *Model {
	t.Helper()
	torchrt.Seed(seed)
	m, err := New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Expire {
		for _, l := range m.layers {
			r := ts.MustRandn(l.attn.SpanW.MustSize(), gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(1.5), true)
			func() { defer torchrt.NoGrad()(); l.attn.SpanW.Copy_(r) }()
		}
	}
	return m
}

// logProbs runs ids (B×n) through the model in blocks of the given lengths, memory
// carried, and returns all log-probabilities, B×n×V flattened.
func logProbs(t *testing.T, m *Model, mem *Memory, ids []int64, b, n int, blocks []int) []float32 {
	t.Helper()
	all := ts.MustOfSlice(ids).MustView([]int64{int64(b), int64(n)}, true)
	var out []*ts.Tensor
	start := 0
	for _, l := range blocks {
		in := all.MustNarrow(1, int64(start), int64(l), false)
		lp, spanLoss, _ := m.forward(mem, in, m.layerStep(mem, StepOptions{}))
		spanLoss.MustDrop()
		in.MustDrop()
		out = append(out, lp)
		start += l
	}
	if start != n {
		t.Fatalf("blocks cover %d of %d tokens", start, n)
	}
	return torchrt.Float32s(ts.MustCat(out, 1))
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func repeat(l, k int) []int {
	s := make([]int, k)
	for i := range s {
		s[i] = l
	}
	return s
}

func TestCausality(t *testing.T) { bothPaths(t, testCausality) }

func testCausality(t *testing.T) {
	defer torchrt.Lock()()
	for _, initCache := range []int{0, -1} {
		causality(t, initCache)
	}
}

// causality: with init_cache -1 the first query has no key at all, and must not
// average the block's own (future) values.
func causality(t *testing.T, initCache int) {
	cfg := testConfig()
	cfg.InitCache = initCache
	m := newModel(t, cfg, 1)
	ids := tokens(16, cfg.Vocab, 1)
	a := logProbs(t, m, m.NewMemory(1), ids, 1, 16, []int{16})
	ids[9] = (ids[9] + 1) % int64(cfg.Vocab)
	ids[1] = (ids[1] + 1) % int64(cfg.Vocab)
	ids[2] = (ids[2] + 1) % int64(cfg.Vocab)
	b := logProbs(t, m, m.NewMemory(1), ids, 1, 16, []int{16})
	v := cfg.Vocab
	if d := maxDiff(a[:v], b[:v]); d != 0 {
		t.Fatalf("init_cache %d: changing tokens 1, 2 and 9 changed position 0 by %g", initCache, d)
	}
	if d := maxDiff(a[v:], b[v:]); d == 0 {
		t.Fatal("changing tokens changed nothing after them: the test sees nothing")
	}
}

// One block of 40 tokens, and blocks of 8, 8, 8, 16 with the memory carried (and pruned
// exactly): the same log-probabilities.
func TestMemoryCarry(t *testing.T) { bothPaths(t, testMemoryCarry) }

func testMemoryCarry(t *testing.T) {
	defer torchrt.Lock()()
	for _, c := range []struct {
		expire   bool
		baseline string
		l        int
	}{
		{true, "", 24},
		{false, BaselineLastL, 64}, // its memory covers the whole sequence
		{false, BaselineTransformerXL, 10},
	} {
		expire := c.expire
		cfg := testConfig()
		cfg.Expire, cfg.Baseline, cfg.MaxSpan = c.expire, c.baseline, c.l
		m := newModel(t, cfg, 2)
		ids := tokens(40, cfg.Vocab, 2)
		long := logProbs(t, m, m.NewMemory(1), ids, 1, 40, []int{40})
		mem := m.NewMemory(1)
		carried := logProbs(t, m, mem, ids, 1, 40, []int{8, 8, 8, 16})
		if d := maxDiff(long, carried); d > 1e-4 {
			t.Fatalf("expire=%v %s: one block and carried blocks differ by %g", expire, c.baseline, d)
		}
		if expire && mem.Dropped() == 0 {
			t.Fatal("no memory was dropped: spans are too long for this test to mean anything")
		}
	}
}

// In eval mode pruning is exact: with every key kept the outputs are the same.
func TestPruningIsExact(t *testing.T) { bothPaths(t, testPruningIsExact) }

func testPruningIsExact(t *testing.T) {
	defer torchrt.Lock()()
	cfg := testConfig()
	m := newModel(t, cfg, 3)
	for _, b := range []int{1, 3} {
		const n = 96
		ids := tokens(b*n, cfg.Vocab, uint64(b))
		pruned := m.NewMemory(b)
		want := expirespan.PerKey
		if b > 1 {
			want = expirespan.Rectangular
		}
		if pruned.Rule != want {
			t.Fatalf("batch %d prunes with rule %d, want %d", b, pruned.Rule, want)
		}
		got := logProbs(t, m, pruned, ids, b, n, repeat(8, n/8))
		kept := m.NewMemory(b)
		kept.Rule = expirespan.KeepAll
		ref := logProbs(t, m, kept, ids, b, n, repeat(8, n/8))
		if d := maxDiff(got, ref); d > 1e-4 {
			t.Fatalf("batch %d: pruned and unpruned outputs differ by %g", b, d)
		}
		if pruned.Dropped() == 0 {
			t.Fatalf("batch %d: nothing was pruned", b)
		}
		if pruned.Live()[0] >= kept.Live()[0] {
			t.Fatalf("batch %d: pruned memory holds %v keys, unpruned %v", b, pruned.Live(), kept.Live())
		}
	}
}

// Incremental decoding gives the block forward pass's log-probabilities.
func TestDecoderMatchesBlockForward(t *testing.T) { bothPaths(t, testDecoderMatchesBlockForward) }

func testDecoderMatchesBlockForward(t *testing.T) {
	defer torchrt.Lock()()
	for _, c := range []struct {
		preNorm  bool
		baseline string
	}{{false, ""}, {true, ""}, {false, BaselineTransformerXL}} {
		preNorm := c.preNorm
		cfg := testConfig()
		cfg.PreNorm = preNorm
		if c.baseline != "" {
			cfg.Expire, cfg.Baseline, cfg.MaxSpan = false, c.baseline, 10
		}
		m := newModel(t, cfg, 4)
		const n = 60
		ids := tokens(n, cfg.Vocab, 4)
		ref := logProbs(t, m, m.NewMemory(1), ids, 1, n, repeat(12, n/12))
		d := m.NewDecoder()
		v := cfg.Vocab
		got, err := d.Feed(ids[:11])
		if err != nil {
			t.Fatal(err)
		}
		for i := 11; ; i++ {
			if diff := maxDiff(got, ref[(i-1)*v:i*v]); diff > 1e-4 {
				t.Fatalf("pre_norm=%v %s: position %d differs by %g", preNorm, c.baseline, i-1, diff)
			}
			if i == n {
				break
			}
			if got, err = d.Feed(ids[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
		if d.Dropped() == 0 {
			t.Fatalf("pre_norm=%v %s: the decoder dropped nothing", preNorm, c.baseline)
		}
		if _, err := d.Feed([]int64{int64(cfg.Vocab)}); err == nil {
			t.Fatal("no error for a token outside the vocabulary")
		}
	}
}

// The span loss pushes spans down: with a large α, mean spans fall over training steps,
// and the span predictor gets a gradient.
func TestSpansShrinkWithLargeAlpha(t *testing.T) { bothPaths(t, testSpansShrinkWithLargeAlpha) }

func testSpansShrinkWithLargeAlpha(t *testing.T) {
	defer torchrt.Lock()()
	cfg := testConfig()
	cfg.Alpha = 5
	cfg.MaxSpan = 64
	cfg.InitFrac = 0.5
	m := newModel(t, cfg, 5)
	rng := torchrt.Seed(5)
	mem := m.NewMemory(cfg.Batch)
	var first, last float64
	for step := 0; step < 30; step++ {
		blk := tensor2(tokens(cfg.Batch*(cfg.Block+1), cfg.Vocab, uint64(step)), cfg.Batch, cfg.Block+1)
		res, err := m.Step(mem, blk, StepOptions{Train: true, RNG: rng})
		if err != nil {
			t.Fatal(err)
		}
		loss := res.TaskLoss.MustAdd(res.SpanLoss, false)
		for _, p := range m.Parameters() {
			p.ZeroGrad()
		}
		loss.MustBackward()
		g := m.layers[0].attn.SpanB.MustGrad(false).Float64Values()[0]
		if step == 0 && g == 0 {
			t.Fatal("no gradient reaches the span predictor")
		}
		func() {
			defer torchrt.NoGrad()()
			for _, p := range m.Parameters() {
				gr := p.MustGrad(false)
				p.MustSub_(gr.MustMulScalar(ts.FloatScalar(0.05), true))
			}
		}()
		mean := (res.Stats.MeanSpan[0] + res.Stats.MeanSpan[1]) / 2
		if step == 0 {
			first = mean
		}
		last = mean
	}
	if last > first*0.5 {
		t.Fatalf("mean span went from %.2f to %.2f; want it at least halved", first, last)
	}
}

func TestWeightsRoundTripAndMismatch(t *testing.T) {
	defer torchrt.Lock()()
	cfg := testConfig()
	m := newModel(t, cfg, 6)
	saved := m.NamedParameters()
	m2 := newModel(t, cfg, 7)
	if err := m2.SetWeights(saved); err != nil {
		t.Fatal(err)
	}
	ids := tokens(24, cfg.Vocab, 6)
	a := logProbs(t, m, m.NewMemory(1), ids, 1, 24, []int{8, 8, 8})
	b := logProbs(t, m2, m2.NewMemory(1), ids, 1, 24, []int{8, 8, 8})
	if d := maxDiff(a, b); d != 0 {
		t.Fatalf("outputs differ by %g after save and load", d)
	}

	wider := cfg
	wider.Dim = 32
	mw := newModel(t, wider, 8)
	err := mw.SetWeights(saved)
	if err == nil || !strings.Contains(err.Error(), "has shape") {
		t.Fatalf("loading into a wider model: err = %v", err)
	}
	deeper := cfg
	deeper.Layers = 3
	md := newModel(t, deeper, 9)
	err = md.SetWeights(saved)
	if err == nil || !strings.Contains(err.Error(), "layer2.") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("loading into a deeper model: err = %v", err)
	}
}

func TestMemoryTensorsRoundTrip(t *testing.T) {
	defer torchrt.Lock()()
	cfg := testConfig()
	m := newModel(t, cfg, 10)
	ids := tokens(3*32, cfg.Vocab, 10)
	mem := m.NewMemory(3)
	_ = logProbs(t, m, mem, ids, 3, 32, []int{8, 8, 8, 8})
	named, free := mem.Tensors()
	var copies []ts.NamedTensor
	for _, n := range named {
		// Through Go bytes, as a checkpoint file holds them.
		dtype, shape, data, err := torchrt.Raw(n.Tensor)
		if err != nil {
			t.Fatal(err)
		}
		c, err := torchrt.FromRaw(dtype, shape, data, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, ts.NamedTensor{Name: n.Name, Tensor: c})
	}
	free()
	back, err := m.MemoryFrom(copies)
	if err != nil {
		t.Fatal(err)
	}
	next := tokens(3*8, cfg.Vocab, 11)
	a := logProbs(t, m, mem, next, 3, 8, []int{8})
	b := logProbs(t, m, back, next, 3, 8, []int{8})
	if d := maxDiff(a, b); d != 0 {
		t.Fatalf("outputs after a saved and loaded memory differ by %g", d)
	}
}

func TestStepMasked(t *testing.T) { bothPaths(t, testStepMasked) }

func testStepMasked(t *testing.T) {
	defer torchrt.Lock()()
	cfg := testConfig()
	m := newModel(t, cfg, 12)
	ids := tokens(2*9, cfg.Vocab, 12)
	run := func(mask []float32) (float64, []float64) {
		mem := m.NewMemory(2)
		blk := tensor2(ids, 2, 9)
		var mk *ts.Tensor
		if mask != nil {
			mk = ts.MustOfSlice(mask).MustView([]int64{2, 8}, true)
		}
		res, err := m.Step(mem, blk, StepOptions{Mask: mk})
		if err != nil {
			t.Fatal(err)
		}
		return res.TaskLoss.Float64Values()[0], res.TokenNLL.Float64Values()
	}
	all, nll := run(nil)
	ones := make([]float32, 16)
	for i := range ones {
		ones[i] = 1
	}
	if got, _ := run(ones); math.Abs(got-all) > 1e-6 {
		t.Fatalf("all-ones mask: %v, unmasked %v", got, all)
	}
	some := make([]float32, 16)
	some[3], some[12] = 1, 1
	if got, _ := run(some); math.Abs(got-(nll[3]+nll[12])/2) > 1e-5 {
		t.Fatalf("mask of two targets: %v, want %v", got, (nll[3]+nll[12])/2)
	}
	if got, _ := run(make([]float32, 16)); got != 0 {
		t.Fatalf("empty mask: loss %v, want 0", got)
	}
}

// Recomputing layers in the backward pass gives the gradients, losses and memory of the
// ordinary pass.
func TestRecomputeGivesTheSameGradients(t *testing.T) {
	bothPaths(t, testRecomputeGivesTheSameGradients)
}

func testRecomputeGivesTheSameGradients(t *testing.T) {
	defer torchrt.Lock()()
	for _, preNorm := range []bool{false, true} {
		cfg := testConfig()
		cfg.PreNorm = preNorm
		cfg.Alpha = 0.1 // a span loss large enough to matter
		plain := newModel(t, cfg, 13)
		cfg.Recompute = true
		re := newModel(t, cfg, 13)
		memA, memB := plain.NewMemory(cfg.Batch), re.NewMemory(cfg.Batch)
		rngA, rngB := torchrt.Seed(13), torchrt.Seed(13)
		for step := 0; step < 4; step++ {
			blk := tensor2(tokens(cfg.Batch*(cfg.Block+1), cfg.Vocab, uint64(step)), cfg.Batch, cfg.Block+1)
			ra, err := plain.Step(memA, blk, StepOptions{Train: true, RNG: rngA})
			if err != nil {
				t.Fatal(err)
			}
			rb, err := re.Step(memB, blk, StepOptions{Train: true, RNG: rngB})
			if err != nil {
				t.Fatal(err)
			}
			if err := ra.Backward(0.5); err != nil {
				t.Fatal(err)
			}
			if err := rb.Backward(0.5); err != nil {
				t.Fatal(err)
			}
			la, lb := ra.TaskLoss.Float64Values()[0], rb.TaskLoss.Float64Values()[0]
			sa, sb := ra.SpanLoss.Float64Values()[0], rb.SpanLoss.Float64Values()[0]
			if math.Abs(la-lb) > 1e-5 || math.Abs(sa-sb) > 1e-7+1e-4*math.Abs(sa) {
				t.Fatalf("pre_norm=%v step %d: losses %v/%v, span %v/%v", preNorm, step, la, lb, sa, sb)
			}
			pa, pb := plain.NamedParameters(), re.NamedParameters()
			for i := range pa {
				ga := torchrt.Float32s(pa[i].Tensor.MustGrad(false))
				gb := torchrt.Float32s(pb[i].Tensor.MustGrad(false))
				scale := 0.0
				for _, v := range ga {
					scale = math.Max(scale, math.Abs(float64(v)))
				}
				if d := maxDiff(ga, gb); d > 1e-4*scale+1e-7 {
					t.Fatalf("pre_norm=%v step %d: gradient of %s differs by %g (largest %g)", preNorm, step, pa[i].Name, d, scale)
				}
				pa[i].Tensor.ZeroGrad()
				pb[i].Tensor.ZeroGrad()
			}
			if fmt.Sprint(memA.Live()) != fmt.Sprint(memB.Live()) || memA.Dropped() != memB.Dropped() {
				t.Fatalf("memories differ: %v/%v live, %d/%d dropped", memA.Live(), memB.Live(), memA.Dropped(), memB.Dropped())
			}
		}
	}
}

// The fused attention trains as the composed one: over steps of training with dropout,
// random shortening and a span loss, the memory carried (and with layers recomputed in
// the backward pass), the same losses, gradients and memory.
func TestFusedStepMatchesComposed(t *testing.T) {
	defer torchrt.Lock()()
	for _, recompute := range []bool{false, true} {
		cfg := testConfig()
		cfg.Alpha, cfg.Dropout, cfg.Noisy, cfg.Recompute = 0.1, 0.2, true, recompute
		cfg.Attention = AttentionComposed
		ref := newModel(t, cfg, 14)
		cfg.Attention = AttentionFused
		fused := newModel(t, cfg, 14)
		memA, memB := ref.NewMemory(cfg.Batch), fused.NewMemory(cfg.Batch)
		rngA, rngB := rand.New(torchrt.NewSource(14)), rand.New(torchrt.NewSource(14))
		worst := 0.0
		for step := 0; step < 4; step++ {
			blk := tensor2(tokens(cfg.Batch*(cfg.Block+1), cfg.Vocab, uint64(step)), cfg.Batch, cfg.Block+1)
			run := func(m *Model, mem *Memory, rng *rand.Rand) *StepResult {
				torchrt.SeedTorch(int64(100 + step))
				r, err := m.Step(mem, blk, StepOptions{Train: true, RNG: rng})
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Backward(1); err != nil {
					t.Fatal(err)
				}
				return r
			}
			ra, rb := run(ref, memA, rngA), run(fused, memB, rngB)
			la, lb := ra.TaskLoss.Float64Values()[0], rb.TaskLoss.Float64Values()[0]
			sa, sb := ra.SpanLoss.Float64Values()[0], rb.SpanLoss.Float64Values()[0]
			if math.Abs(la-lb) > 1e-5 || math.Abs(sa-sb) > 1e-7+1e-5*math.Abs(sa) || sa == 0 {
				t.Fatalf("recompute=%v step %d: losses %v/%v, span %v/%v", recompute, step, la, lb, sa, sb)
			}
			pa, pb := ref.NamedParameters(), fused.NamedParameters()
			for i := range pa {
				ga := torchrt.Float32s(pa[i].Tensor.MustGrad(false))
				gb := torchrt.Float32s(pb[i].Tensor.MustGrad(false))
				scale := 1.0
				for _, v := range ga {
					scale = math.Max(scale, math.Abs(float64(v)))
				}
				d := maxDiff(ga, gb)
				worst = math.Max(worst, d)
				if d > 1e-5*scale {
					t.Fatalf("recompute=%v step %d: gradient of %s differs by %g (largest %g)", recompute, step, pa[i].Name, d, scale)
				}
				pa[i].Tensor.ZeroGrad()
				pb[i].Tensor.ZeroGrad()
			}
			if fmt.Sprint(memA.Live()) != fmt.Sprint(memB.Live()) || memA.Dropped() != memB.Dropped() {
				t.Fatalf("memories differ: %v/%v live, %d/%d dropped", memA.Live(), memB.Live(), memA.Dropped(), memB.Dropped())
			}
		}
		t.Logf("recompute=%v: largest gradient difference %g", recompute, worst)
	}
}
