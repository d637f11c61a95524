// Package expirespan implements Expire-Span attention (Sukhbaatar et al., "Not All
// Memories are Created Equal: Learning to Forget by Expiring", ICML 2021): attention
// over a memory of earlier hidden states in which every memory predicts its own span
// e_i = L·σ(wᵀx_i/pre_div + b) and is masked softly once its age passes that span, so that
// it can be dropped for good when the mask reaches zero.
//
// An Attention holds one layer's weights; a Memory holds one layer's memory for B streams
// and is updated after every block with one of the pruning Rules. The same code serves
// training, evaluation and incremental decoding.
package expirespan

import (
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/native"
	"xspan/internal/torchrt"
)

// Config is one attention layer's settings (lm.Config holds them for the whole model).
type Config struct {
	Dim, Heads int
	PosWindow  int     // P: distances 1…P get a learned position term
	Expire     bool    // learned spans; false: causal attention over the whole memory
	Window     int     // > 0: a query sees keys at distance 1…Window only (Transformer-XL)
	MaxSpan    float64 // L
	Ramp       float64 // R
	Alpha      float64 // span-loss coefficient
	PreDiv     float64 // span predictor input divisor
	InitFrac   float64 // p0: initial span fraction
	Dropout    float64 // on attention weights
	OutScale   float64 // scales W_o at init (pre-norm: 1/√(2N)); 0 means 1
}

// Attention is one layer's attention weights. Projections have no biases; matrices are
// stored in×out so that x·W applies them.
type Attention struct {
	cfg            Config
	Wq, Wk, Wv, Wo *ts.Tensor
	SpanW, SpanB   *ts.Tensor // d×1 and 1: the span predictor
}

// NewAttention creates a layer's weights under p, initialised as PyTorch's nn.Linear
// (uniform ±1/√d), the span predictor with w = 0 and b = logit(p0).
func NewAttention(p *nn.Path, cfg Config) *Attention {
	d := int64(cfg.Dim)
	bound := 1 / math.Sqrt(float64(d))
	u := nn.NewUniformInit(-bound, bound)
	a := &Attention{cfg: cfg}
	a.Wq = p.MustNewVar("wq", []int64{d, d}, u)
	a.Wk = p.MustNewVar("wk", []int64{d, d}, u)
	a.Wv = p.MustNewVar("wv", []int64{d, d}, u)
	oScale := cfg.OutScale
	if oScale == 0 {
		oScale = 1
	}
	a.Wo = p.MustNewVar("wo", []int64{d, d}, nn.NewUniformInit(-bound*oScale, bound*oScale))
	if cfg.Expire {
		a.SpanW = p.MustNewVar("span_w", []int64{d, 1}, nn.NewConstInit(0))
		// A constant init other than 0 or 1 would make a float64 tensor: fill a zero one.
		a.SpanB = p.MustNewVar("span_b", []int64{1}, nn.NewConstInit(0))
		func() {
			defer torchrt.NoGrad()()
			a.SpanB.MustFill_(ts.FloatScalar(math.Log(cfg.InitFrac / (1 - cfg.InitFrac))))
		}()
	}
	return a
}

// Config returns the layer's settings.
func (a *Attention) Config() Config { return a.cfg }

// Spans computes e = L·σ(x·w/pre_div + b) for keys x (B×N×d), giving B×N.
func (a *Attention) Spans(x *ts.Tensor) *ts.Tensor {
	z := x.MustMatmul(a.SpanW, false).MustSqueezeDim(-1, true)
	if a.cfg.PreDiv != 1 {
		z = z.MustMulScalar(ts.FloatScalar(1/a.cfg.PreDiv), true)
	}
	z = z.MustAdd(a.SpanB, true)
	return z.MustSigmoid(true).MustMulScalar(ts.FloatScalar(a.cfg.MaxSpan), true)
}

// splitHeads turns B×N×d into B×K×N×d_h.
func (a *Attention) splitHeads(x *ts.Tensor, del bool) *ts.Tensor {
	s := x.MustSize()
	k := int64(a.cfg.Heads)
	return x.MustView([]int64{s[0], s[1], k, s[2] / k}, del).MustTranspose(1, 2, true)
}

// Masks are a block's soft mask and what is derived from it, built once per layer and
// broadcast over heads.
type Masks struct {
	M       *ts.Tensor // B×1×T×N soft mask m (ramp times causal), no graph through the causal part
	LogM    *ts.Tensor // B×1×T×N: log m where m > 0, −1e30 where m = 0
	RowOK   *ts.Tensor // B×1×T×1: 1 where a query sees at least one key
	R       *ts.Tensor // B×T×N remaining span r = e' − C − j (nil without expiry)
	PosIdx  *ts.Tensor // B×1×T×W int64: for the last W keys, the position-table column (P: none)
	PosFrom int        // N − W: the first key slot with a position term
}

// Drop frees the masks.
func (mk *Masks) Drop() {
	for _, t := range []*ts.Tensor{mk.M, mk.LogM, mk.RowOK, mk.R, mk.PosIdx} {
		if t != nil {
			t.MustDrop()
		}
	}
}

// BuildMasks computes the masks of a block of t queries over the keys of b streams with
// ages ages (B×N, row-major: the memory's, then 0, −1, …; see Memory.KeyAges) and spans
// e (B×N, nil without expiry). shorten > 0 caps spans at shorten·L (random shortening;
// the cap applies to mask and loss only). The ages come from Go, not from a tensor, so
// that finding the position window costs no copy back from the device.
func (a *Attention) BuildMasks(e *ts.Tensor, ages []float32, b, t int, shorten float64) *Masks {
	n := len(ages) / b
	dev := a.Wq.MustDevice()
	c := torchrt.MustFromSlice(ages, []int64{int64(b), int64(n)}, dev)
	defer c.MustDrop()
	j := ts.MustArange(ts.IntScalar(int64(t)), gotch.Float, dev).MustView([]int64{1, int64(t), 1}, true)
	// δ_ji = j + C_i: the distance from query j back to key i (B×T×N).
	delta := c.MustUnsqueeze(1, false).MustAdd(j, true)
	j.MustDrop()
	causal := delta.MustGe(ts.FloatScalar(1), false)
	if a.cfg.Window > 0 {
		near := delta.MustLe(ts.FloatScalar(float64(a.cfg.Window)), false)
		causal = causal.MustLogicalAnd(near, true)
		near.MustDrop()
	}
	causal = causal.MustTotype(gotch.Float, true)
	mk := &Masks{}
	if a.cfg.Expire {
		ee := e
		if shorten > 0 {
			ee = e.MustClampMax(ts.FloatScalar(shorten*a.cfg.MaxSpan), false)
		}
		// r = e' − δ, m = clamp(1 + r/R, 0, 1) · causal
		mk.R = ee.MustUnsqueeze(1, false).MustSub(delta, true)
		if shorten > 0 {
			ee.MustDrop()
		}
		u := mk.R.MustMulScalar(ts.FloatScalar(1/a.cfg.Ramp), false).MustAddScalar(ts.FloatScalar(1), true)
		// The mask itself carries no graph (the span loss and the row check only read it);
		// the gradient to the spans flows through log m below.
		ud := u.MustDetach(false)
		m := ud.MustClamp(ts.FloatScalar(0), ts.FloatScalar(1), true).MustMul(causal, true)
		causal.MustDrop()
		mk.M = m.MustUnsqueeze(1, true)
		// log m on the keys a query may see, −1e30 elsewhere: softmax(s + log m) is
		// a·m/Σ(a·m) with a = softmax(s masked), the reference's renormalised weights, in one
		// pass. Where the causal mask hides a key, the −1e30 makes its weight exactly 0, so no
		// gradient reaches log there; the clamp keeps log finite (and its gradient 0) below ε.
		masked := mk.M.MustLe(ts.FloatScalar(0), false)
		mk.LogM = u.MustClamp(ts.FloatScalar(1e-30), ts.FloatScalar(1), true).MustLog(true).MustUnsqueeze(1, true).
			MustAdd(masked.MustTotype(gotch.Float, false).MustMulScalar(ts.FloatScalar(-1e30), true), true)
		masked.MustDrop()
	} else {
		mk.M = causal.MustUnsqueeze(1, true)
		masked := mk.M.MustLe(ts.FloatScalar(0), false)
		mk.LogM = masked.MustTotype(gotch.Float, false).MustMulScalar(ts.FloatScalar(-1e30), true)
		masked.MustDrop()
	}
	// A query that may see no key at all gets a zero output (not a uniform average).
	mk.RowOK = mk.M.MustSumDimIntlist([]int64{-1}, true, gotch.Float, false).MustGt(ts.FloatScalar(0), true).MustTotype(gotch.Float, true)
	// The position term only concerns keys at distance 1…P from some query: those of age
	// ≤ P, a suffix of every stream's keys (ages fall along the slots). Work on the last
	// W slots only.
	p := float64(a.cfg.PosWindow)
	mk.PosFrom = posFrom(ages, b, n, a.cfg.PosWindow)
	w := n - mk.PosFrom
	if w > 0 {
		tail := delta.MustNarrow(2, int64(n-w), int64(w), false)
		okLow := tail.MustGe(ts.FloatScalar(1), false)
		okHigh := tail.MustLe(ts.FloatScalar(p), false)
		ok := okLow.MustLogicalAnd(okHigh, true).MustTotype(gotch.Float, true)
		okHigh.MustDrop()
		// Column P − δ holds distance δ (the reference's layout); column P, appended as
		// zeros, serves every other distance: idx = P − ok·δ.
		mk.PosIdx = ok.MustMul(tail, true).MustNeg(true).MustAddScalar(ts.FloatScalar(p), true).
			MustTotype(gotch.Int64, true).MustUnsqueeze(1, true)
		tail.MustDrop()
	}
	delta.MustDrop()
	return mk
}

// SpanLoss is α/(R·T) · Σ_j Σ_i r_ji·[0 < m_ji < 1], averaged over the batch: a value ≤ 0
// whose gradient shortens the spans of keys inside their ramp.
func (a *Attention) SpanLoss(mk *Masks, t int) *ts.Tensor {
	m := mk.M.MustSqueezeDim(1, false)
	lt := m.MustLt(ts.FloatScalar(1), false)
	in := m.MustGt(ts.FloatScalar(0), false).MustLogicalAnd(lt, true).MustTotype(gotch.Float, true)
	lt.MustDrop()
	m.MustDrop()
	b := mk.R.MustSize()[0]
	s := mk.R.MustMul(in, false).MustSum(gotch.Float, true)
	in.MustDrop()
	return s.MustMulScalar(ts.FloatScalar(a.cfg.Alpha/(a.cfg.Ramp*float64(t)*float64(b))), true)
}

// Attend computes the attention output (before the residual) of queries from h
// (B×T×d) over keys and values k, v (B×K×N×d_h) with masks mk; pos is the d_h×P position
// table. train turns dropout on.
func (a *Attention) Attend(h, k, v, pos *ts.Tensor, mk *Masks, train bool) *ts.Tensor {
	dh := int64(a.cfg.Dim / a.cfg.Heads)
	// Scaling q by 1/√d_h scales the content and position scores alike, on a tensor T/N
	// times smaller than the scores.
	q := a.splitHeads(h.MustMatmul(a.Wq, false), true).MustMulScalar(ts.FloatScalar(1/math.Sqrt(float64(dh))), true) // B×K×T×d_h
	kt := k.MustTranspose(-1, -2, false)
	s := q.MustMatmul(kt, false) // B×K×T×N
	kt.MustDrop()
	if mk.PosIdx != nil {
		// Position term by each key's true distance: q_j·p_{col(δ_ji)} for 1 ≤ δ ≤ P, on the
		// last W key slots; column P (zeros) serves the other distances.
		zero := ts.MustZeros([]int64{dh, 1}, gotch.Float, pos.MustDevice())
		posExt := ts.MustCat([]*ts.Tensor{pos, zero}, 1)
		zero.MustDrop()
		qp := q.MustMatmul(posExt, false) // B×K×T×(P+1)
		posExt.MustDrop()
		isz := mk.PosIdx.MustSize()
		isz[1] = int64(a.cfg.Heads)
		idx := mk.PosIdx.MustExpand(isz, false, false)
		pe := qp.MustGather(3, idx, false, true)
		idx.MustDrop()
		tail := s.MustNarrow(3, int64(mk.PosFrom), isz[3], false)
		tail.MustAdd_(pe)
		tail.MustDrop()
		pe.MustDrop()
	}
	q.MustDrop()
	s.MustAdd_(mk.LogM)
	att := s.MustSoftmax(-1, gotch.Float, true)
	if train && a.cfg.Dropout > 0 {
		// The fused path's dropout: masks drawn per group of queries from one seed.
		att = groupDropout(att, a.cfg.Dropout, native.DrawSeed(), true)
	}
	o := att.MustMatmul(v, true).MustMul(mk.RowOK, true) // B×K×T×d_h
	o = o.MustTranspose(1, 2, true).MustContiguous(true)
	os := o.MustSize()
	o = o.MustView([]int64{os[0], os[1], os[2] * os[3]}, true)
	return o.MustMatmul(a.Wo, true)
}

// KeysValues projects keys x (B×N×d) into per-head keys and values (B×K×N×d_h).
func (a *Attention) KeysValues(x *ts.Tensor) (k, v *ts.Tensor) {
	return a.splitHeads(x.MustMatmul(a.Wk, false), true), a.splitHeads(x.MustMatmul(a.Wv, false), true)
}
