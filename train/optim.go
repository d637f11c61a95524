package train

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/torchrt"
)

// Adam is the Adam optimiser (Kingma and Ba) over a fixed list of parameter tensors, with
// optional decoupled weight decay (AdamW), written over plain tensor ops so that its state
// (the step count and both moment estimates) can be saved and restored exactly.
//
// Its update is PyTorch's single-tensor Adam:
//
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
//
// and, with weight decay λ > 0, p ← p·(1 − lr·λ) first. Every method must be called from
// a goroutine that holds its OS thread (torchrt.Lock).
type Adam struct {
	beta1, beta2, eps, weightDecay float64

	params []*ts.Tensor
	m, v   []*ts.Tensor
	step   int64
}

// AdamOption configures NewAdam.
type AdamOption func(*Adam) error

// WithBetas sets Adam's moment decay rates (default 0.9 and 0.999).
func WithBetas(beta1, beta2 float64) AdamOption {
	return func(a *Adam) error {
		if !(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1) {
			return fmt.Errorf("adam: betas %g, %g: want each in [0, 1)", beta1, beta2)
		}
		a.beta1, a.beta2 = beta1, beta2
		return nil
	}
}

// WithEps sets the ε added to the denominator (default 1e-8).
func WithEps(eps float64) AdamOption {
	return func(a *Adam) error {
		if !(eps > 0) {
			return fmt.Errorf("adam: eps %g: want > 0", eps)
		}
		a.eps = eps
		return nil
	}
}

// WithWeightDecay sets the decoupled weight decay λ (default 0: plain Adam).
func WithWeightDecay(wd float64) AdamOption {
	return func(a *Adam) error {
		if !(wd >= 0) || math.IsInf(wd, 0) {
			return fmt.Errorf("adam: weight decay %g: want ≥ 0", wd)
		}
		a.weightDecay = wd
		return nil
	}
}

// NewAdam returns an optimiser for params, whose moment estimates start at zero on each
// parameter's device.
func NewAdam(params []*ts.Tensor, opts ...AdamOption) (*Adam, error) {
	a := &Adam{beta1: 0.9, beta2: 0.999, eps: 1e-8, params: slices.Clone(params)}
	for _, o := range opts {
		if err := o(a); err != nil {
			return nil, err
		}
	}
	if len(params) == 0 {
		return nil, errors.New("adam: no parameters")
	}
	for _, p := range a.params {
		m, err := p.ZerosLike(false)
		if err != nil {
			return nil, fmt.Errorf("adam: %w", err)
		}
		v := p.MustZerosLike(false)
		// Moments never need gradients.
		m.MustDetach_()
		v.MustDetach_()
		a.m = append(a.m, m)
		a.v = append(a.v, v)
	}
	return a, nil
}

// Steps is the number of updates taken so far (t in the bias corrections).
func (a *Adam) Steps() int64 { return a.step }

// ZeroGrad sets every parameter's gradient to zero (where it has one).
func (a *Adam) ZeroGrad() {
	for _, p := range a.params {
		g := p.MustGrad(false)
		if g.MustDefined() {
			g.MustZero_()
		}
		g.MustDrop()
	}
}

// Step applies one update with learning rate lr to every parameter that has a gradient.
func (a *Adam) Step(lr float64) error {
	if math.IsNaN(lr) || lr < 0 {
		return fmt.Errorf("adam: learning rate %g", lr)
	}
	defer torchrt.NoGrad()()

	a.step++
	bc1 := 1 - math.Pow(a.beta1, float64(a.step))
	bc2 := 1 - math.Pow(a.beta2, float64(a.step))
	stepSize := lr / bc1

	sB1 := ts.FloatScalar(1 - a.beta1)
	sB2 := ts.FloatScalar(a.beta2)
	sG2 := ts.FloatScalar(1 - a.beta2)
	sBC2 := ts.FloatScalar(math.Sqrt(bc2))
	sEps := ts.FloatScalar(a.eps)
	sNegInvStep := ts.FloatScalar(-1 / stepSize)
	sDecay := ts.FloatScalar(1 - lr*a.weightDecay)
	defer func() {
		for _, s := range []*ts.Scalar{sB1, sB2, sG2, sBC2, sEps, sNegInvStep, sDecay} {
			s.MustDrop()
		}
	}()
	for i, p := range a.params {
		g := p.MustGrad(false)
		if !g.MustDefined() {
			g.MustDrop()
			continue
		}
		if a.weightDecay > 0 {
			p.MustMulScalar_(sDecay)
		}
		m, v := a.m[i], a.v[i]
		// m ← m + (1−β1)(g − m)
		m.MustLerp_(g, sB1)
		// v ← β2·v + ((1−β2)·g)·g
		v.MustMulScalar_(sB2)
		gs := g.MustMulScalar(sG2, false)
		v.MustAddcmul_(gs, g)
		gs.MustDrop()
		g.MustDrop()
		// denom = (√v/√bc2 + ε) · (−bc1/lr); p ← p + m/denom
		denom := v.MustSqrt(false)
		denom.MustDivScalar_(sBC2)
		denom.MustAddScalar_(sEps)
		denom.MustMulScalar_(sNegInvStep)
		p.MustAddcdiv_(m, denom)
		denom.MustDrop()
	}
	return nil
}

// ClipGradNorm scales the gradients of params so that their global L2 norm is at most
// maxNorm (as torch.nn.utils.clip_grad_norm_: by maxNorm/(norm+1e-6) when that is below
// one) and returns the norm before clipping. maxNorm ≤ 0 only measures. A non-finite norm
// is returned as it is and nothing is scaled.
func ClipGradNorm(params []*ts.Tensor, maxNorm float64) float64 {
	var sq *ts.Tensor
	var grads []*ts.Tensor
	defer func() {
		for _, g := range grads {
			g.MustDrop()
		}
	}()
	for _, p := range params {
		g := p.MustGrad(false)
		if !g.MustDefined() {
			g.MustDrop()
			continue
		}
		grads = append(grads, g)
		s := g.MustSquare(false).MustSum(gotch.Double, true)
		if sq == nil {
			sq = s
		} else {
			sq.MustAdd_(s)
			s.MustDrop()
		}
	}
	if sq == nil {
		return 0
	}
	total := torchrt.Float64(sq)
	sq.MustDrop()
	norm := math.Sqrt(total)
	if maxNorm <= 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	coef := maxNorm / (norm + 1e-6)
	if coef >= 1 {
		return norm
	}
	s := ts.FloatScalar(coef)
	defer s.MustDrop()
	for _, g := range grads {
		g.MustMulScalar_(s)
	}
	return norm
}

// Adam's state is the moments as named tensors "m.<i>" and "v.<i>" (i the parameter's
// index) and the step count as the int64 tensor "step".

// State returns the optimiser's state as named tensors for a checkpoint; free drops the
// ones made for it (the moments stay the optimiser's).
func (a *Adam) State() (named []ts.NamedTensor, free func()) {
	named = make([]ts.NamedTensor, 0, 2*len(a.m)+1)
	step := ts.MustOfSlice([]int64{a.step})
	named = append(named, ts.NamedTensor{Name: "step", Tensor: step})
	for i := range a.m {
		named = append(named,
			ts.NamedTensor{Name: fmt.Sprintf("m.%d", i), Tensor: a.m[i]},
			ts.NamedTensor{Name: fmt.Sprintf("v.%d", i), Tensor: a.v[i]})
	}
	return named, func() { step.MustDrop() }
}

// SetState replaces the optimiser's state with one that State gave (loaded from a
// checkpoint). It takes the tensors: the moments become the optimiser's, the rest are
// dropped (all of them on error). There must be a moment of the right shape and dtype
// for every parameter, and nothing else.
func (a *Adam) SetState(named []ts.NamedTensor) error {
	byName := make(map[string]*ts.Tensor, len(named))
	for _, n := range named {
		byName[n.Name] = n.Tensor
	}
	dropAll := func() {
		for _, n := range named {
			n.Tensor.MustDrop()
		}
	}
	st, ok := byName["step"]
	if !ok {
		dropAll()
		return errors.New("adam: no step count")
	}
	if sz := st.MustSize(); len(sz) != 1 || sz[0] != 1 {
		dropAll()
		return fmt.Errorf("adam: step count of shape %v, want [1]", sz)
	}
	step := st.Int64Values()[0]
	m := make([]*ts.Tensor, len(a.params))
	v := make([]*ts.Tensor, len(a.params))
	for i, p := range a.params {
		want := p.MustSize()
		for _, pair := range []struct {
			name string
			dst  []*ts.Tensor
		}{{fmt.Sprintf("m.%d", i), m}, {fmt.Sprintf("v.%d", i), v}} {
			t, ok := byName[pair.name]
			if !ok {
				dropAll()
				return fmt.Errorf("adam: no tensor %q (state of %d parameters expected)", pair.name, len(a.params))
			}
			if got := t.MustSize(); !slices.Equal(got, want) {
				dropAll()
				return fmt.Errorf("adam: tensor %q has shape %v, parameter %d has %v", pair.name, got, i, want)
			}
			if t.DType() != p.DType() {
				dropAll()
				return fmt.Errorf("adam: tensor %q has dtype %v, parameter %d has %v", pair.name, t.DType(), i, p.DType())
			}
			if dev := p.MustDevice(); t.MustDevice() != dev {
				dropAll()
				return fmt.Errorf("adam: tensor %q is on %v, parameter %d on %v", pair.name, t.MustDevice(), i, dev)
			}
			pair.dst[i] = t
			delete(byName, pair.name)
		}
	}
	delete(byName, "step")
	if len(byName) > 0 {
		dropAll()
		return fmt.Errorf("adam: holds %d tensors more than the model's %d parameters need", len(byName), len(a.params))
	}
	st.MustDrop()
	for i := range a.params {
		a.m[i].MustDrop()
		a.v[i].MustDrop()
	}
	a.m, a.v, a.step = m, v, step
	return nil
}

// Drop frees the optimiser's moment tensors.
func (a *Adam) Drop() {
	for i := range a.m {
		a.m[i].MustDrop()
		a.v[i].MustDrop()
	}
	a.m, a.v = nil, nil
}
