package train

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/checkpoint"
	"xspan/internal/torchrt"
	"xspan/lm"
)

// setGrad gives p the gradient g (through a backward pass of sum(p·g)).
func setGrad(t *testing.T, p *ts.Tensor, g []float32) {
	t.Helper()
	c := ts.MustOfSlice(g)
	loss := p.MustMul(c, false).MustSum(gotch.Float, true)
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	loss.MustDrop()
	c.MustDrop()
}

// adamRef is Adam in float64, as PyTorch defines it.
type adamRef struct {
	p, m, v []float64
	step    int
}

func (a *adamRef) update(g []float64, lr, b1, b2, eps, wd float64) {
	a.step++
	bc1 := 1 - math.Pow(b1, float64(a.step))
	bc2 := 1 - math.Pow(b2, float64(a.step))
	for i := range a.p {
		a.p[i] *= 1 - lr*wd
		a.m[i] = b1*a.m[i] + (1-b1)*g[i]
		a.v[i] = b2*a.v[i] + (1-b2)*g[i]*g[i]
		a.p[i] -= lr / bc1 * a.m[i] / (math.Sqrt(a.v[i])/math.Sqrt(bc2) + eps)
	}
}

func TestAdamMatchesReference(t *testing.T) {
	defer torchrt.Lock()()
	for _, wd := range []float64{0, 0.1} {
		init := []float32{0.5, -1.25, 2, 0.001}
		p := tensorOf(init)
		opt, err := NewAdam([]*ts.Tensor{p}, WithWeightDecay(wd))
		if err != nil {
			t.Fatal(err)
		}
		ref := &adamRef{p: []float64{0.5, -1.25, 2, 0.001}, m: make([]float64, 4), v: make([]float64, 4)}
		grads := [][]float32{{1, -2, 0.5, 0}, {0.1, 0.2, -3, 1e-3}, {-1, 1, -1, 1}, {0, 0, 0, 5}}
		for s, g := range grads {
			opt.ZeroGrad()
			setGrad(t, p, g)
			lr := 0.01 * float64(s+1)
			if err := opt.Step(lr); err != nil {
				t.Fatal(err)
			}
			g64 := make([]float64, len(g))
			for i := range g {
				g64[i] = float64(g[i])
			}
			ref.update(g64, lr, 0.9, 0.999, 1e-8, wd)
		}
		got := torchrt.Float64s(p)
		for i := range got {
			if math.Abs(got[i]-ref.p[i]) > 1e-6*math.Max(1, math.Abs(ref.p[i])) {
				t.Errorf("wd %g: p[%d] = %.9g, reference %.9g", wd, i, got[i], ref.p[i])
			}
		}
		if opt.Steps() != int64(len(grads)) {
			t.Errorf("Steps() = %d, want %d", opt.Steps(), len(grads))
		}
		opt.Drop()
	}
}

func TestAdamZeroGradAccumulates(t *testing.T) {
	defer torchrt.Lock()()
	p := tensorOf([]float32{1, 2})
	opt, err := NewAdam([]*ts.Tensor{p})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Drop()
	opt.ZeroGrad() // before any gradient: no-op
	setGrad(t, p, []float32{1, 1})
	setGrad(t, p, []float32{2, 3})
	g := p.MustGrad(false)
	if got := torchrt.Float64s(g); got[0] != 3 || got[1] != 4 {
		t.Fatalf("accumulated grad = %v, want [3 4]", got)
	}
	opt.ZeroGrad()
	if got := torchrt.Float64s(g); got[0] != 0 || got[1] != 0 {
		t.Fatalf("after ZeroGrad grad = %v", got)
	}
	g.MustDrop()
}

func TestClipGradNorm(t *testing.T) {
	defer torchrt.Lock()()
	a := tensorOf([]float32{0, 0})
	b := tensorOf([]float32{0})
	setGrad(t, a, []float32{3, 0})
	setGrad(t, b, []float32{4})
	params := []*ts.Tensor{a, b}
	if n := ClipGradNorm(params, 0); n != 5 {
		t.Fatalf("norm = %v, want 5", n)
	}
	if n := ClipGradNorm(params, 10); n != 5 {
		t.Fatalf("norm = %v, want 5 (no clipping)", n)
	}
	if n := ClipGradNorm(params, 1); n != 5 {
		t.Fatalf("norm before clipping = %v, want 5", n)
	}
	n := ClipGradNorm(params, 0)
	if math.Abs(n-1) > 1e-5 {
		t.Fatalf("norm after clipping to 1 = %v", n)
	}
	ga := a.MustGrad(false)
	if v := torchrt.Float64s(ga); math.Abs(v[0]-0.6) > 1e-5 {
		t.Fatalf("clipped grad %v, want 0.6", v[0])
	}
	ga.MustDrop()
	// No gradients at all: norm 0.
	c := tensorOf([]float32{1})
	if n := ClipGradNorm([]*ts.Tensor{c}, 1); n != 0 {
		t.Fatalf("norm without grads = %v", n)
	}
}

func TestAdamStateRoundTrip(t *testing.T) {
	defer torchrt.Lock()()
	dir := t.TempDir()
	mk := func() (*ts.Tensor, *ts.Tensor, *Adam) {
		p := tensorOf([]float32{1, 2, 3})
		q := tensorOf([]float32{-1})
		opt, err := NewAdam([]*ts.Tensor{p, q})
		if err != nil {
			t.Fatal(err)
		}
		return p, q, opt
	}
	p1, q1, o1 := mk()
	for s := 0; s < 3; s++ {
		o1.ZeroGrad()
		setGrad(t, p1, []float32{1, -1, 0.5})
		setGrad(t, q1, []float32{2})
		o1.Step(0.1)
	}
	path := filepath.Join(dir, "optim.safetensors")
	named, free := o1.State()
	sum, err := checkpoint.SaveTensors(path, named, nil)
	free()
	if err != nil {
		t.Fatal(err)
	}
	load := func(o *Adam) error {
		named, err := checkpoint.LoadTensors(path, gotch.CPU, &sum)
		if err != nil {
			t.Fatal(err)
		}
		return o.SetState(named)
	}
	// A second optimiser over copies of the weights, loaded from the file, takes the same
	// next step bit for bit.
	p2 := tensorOf([]float32{0, 0, 0})
	q2 := tensorOf([]float32{0})
	func() { defer torchrt.NoGrad()(); p2.Copy_(p1); q2.Copy_(q1) }()
	o2, err := NewAdam([]*ts.Tensor{p2, q2})
	if err != nil {
		t.Fatal(err)
	}
	if err := load(o2); err != nil {
		t.Fatal(err)
	}
	if o2.Steps() != 3 {
		t.Fatalf("loaded step %d, want 3", o2.Steps())
	}
	for _, o := range []struct {
		opt  *Adam
		p, q *ts.Tensor
	}{{o1, p1, q1}, {o2, p2, q2}} {
		o.opt.ZeroGrad()
		setGrad(t, o.p, []float32{0.3, 0.2, 0.1})
		setGrad(t, o.q, []float32{-1})
		o.opt.Step(0.05)
	}
	for i, pair := range [][2]*ts.Tensor{{p1, p2}, {q1, q2}} {
		a, b := torchrt.Float64s(pair[0]), torchrt.Float64s(pair[1])
		for j := range a {
			if a[j] != b[j] {
				t.Fatalf("param %d[%d]: %v after save/load vs %v", i, j, b[j], a[j])
			}
		}
	}
	// The state of another model is refused with a clear error.
	r := tensorOf([]float32{1, 2})
	o3, _ := NewAdam([]*ts.Tensor{r})
	err = load(o3)
	if err == nil || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("loading into a different parameter list: err = %v, want a shape error", err)
	}
	o4, _ := NewAdam([]*ts.Tensor{tensorOf([]float32{1, 2, 3})})
	if err := load(o4); err == nil || !strings.Contains(err.Error(), "more") {
		t.Fatalf("loading 2 parameters' state into 1: err = %v", err)
	}
}

func TestSchedule(t *testing.T) {
	const eps = 1e-12
	near := func(a, b float64) bool { return math.Abs(a-b) < eps }
	c := Schedule{Kind: lm.ScheduleConstant, Peak: 1e-3, Warmup: 4}
	for step, want := range []float64{2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3} {
		if got := c.LR(int64(step)); !near(got, want) {
			t.Errorf("constant LR(%d) = %g, want %g", step, got, want)
		}
	}
	cos := Schedule{Kind: lm.ScheduleCosine, Peak: 1, Warmup: 0, Steps: 10, Final: 0.1}
	if got := cos.LR(0); !near(got, 1) {
		t.Errorf("cosine LR(0) = %g", got)
	}
	if got := cos.LR(5); !near(got, 0.55) {
		t.Errorf("cosine LR(5) = %g, want 0.55", got)
	}
	if got := cos.LR(10); !near(got, 0.1) {
		t.Errorf("cosine LR(10) = %g, want 0.1", got)
	}
	if got := cos.LR(50); !near(got, 0.1) {
		t.Errorf("cosine LR past the end = %g, want 0.1", got)
	}
	st := Schedule{Kind: lm.ScheduleStep, Peak: 7e-4, Warmup: 2, DecayAt: 5, Final: 7e-5}
	for step, want := range []float64{3.5e-4, 7e-4, 7e-4, 7e-4, 7e-4, 7e-5, 7e-5} {
		if got := st.LR(int64(step)); !near(got, want) {
			t.Errorf("step LR(%d) = %g, want %g", step, got, want)
		}
	}
}
