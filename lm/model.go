// Package lm is xspan's language model: token embedding, N Expire-Span Transformer layers
// (post-norm, or pre-norm), and an untied output layer with log-softmax. Config holds every
// hyperparameter; Model.Step runs one block with the memory carried across calls;
// Decoder generates one token at a time.
package lm

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"xspan/expirespan"
)

// Model is the language model's weights with its config.
type Model struct {
	Cfg Config
	VS  *nn.VarStore

	dev    gotch.Device
	emb    *ts.Tensor // V×d, N(0,1)
	pos    *ts.Tensor // d_h×P, shared by all layers
	layers []*layer
	normF  *layerNorm // pre-norm only
	wOut   *ts.Tensor // d×V
	bOut   *ts.Tensor // V
}

type layerNorm struct{ w, b *ts.Tensor }

func newLayerNorm(p *nn.Path, d int64) *layerNorm {
	return &layerNorm{w: p.MustNewVar("weight", []int64{d}, nn.NewConstInit(1)), b: p.MustNewVar("bias", []int64{d}, nn.NewConstInit(0))}
}

func (n *layerNorm) forward(x *ts.Tensor) *ts.Tensor {
	return ts.MustLayerNorm(x, []int64{n.w.MustSize()[0]}, n.w, n.b, 1e-5, false)
}

type layer struct {
	attn         *expirespan.Attention
	norm1, norm2 *layerNorm
	w1, b1       *ts.Tensor // d×FFN, FFN
	w2, b2       *ts.Tensor // FFN×d, d
}

// New creates a model with freshly initialised weights on dev. Only cfg's ModelConfig
// matters to the model; the whole config goes with it into checkpoints.
func New(cfg Config, dev gotch.Device) (*Model, error) {
	if err := cfg.ModelConfig.Validate(); err != nil {
		return nil, err
	}
	vs := nn.NewVarStore(dev)
	root := vs.Root()
	d, f, v := int64(cfg.Dim), int64(cfg.FFN), int64(cfg.Vocab)
	p := cfg.EffectivePosWindow()
	m := &Model{Cfg: cfg, VS: vs, dev: dev}
	m.emb = root.MustRandn("emb", []int64{v, d}, 0, 1)
	m.pos = root.MustRandn("pos", []int64{d / int64(cfg.Heads), int64(p)}, 0, 1)
	outScale := 1.0
	if cfg.PreNorm {
		outScale = 1 / math.Sqrt(2*float64(cfg.Layers))
	}
	acfg := expirespan.Config{
		Dim: cfg.Dim, Heads: cfg.Heads, PosWindow: p, Expire: cfg.Expire,
		MaxSpan: float64(cfg.MaxSpan), Ramp: float64(cfg.Ramp), Alpha: cfg.Alpha, PreDiv: cfg.PreDiv,
		InitFrac: cfg.InitFrac, Dropout: cfg.Dropout, OutScale: outScale,
	}
	for i := 0; i < cfg.Layers; i++ {
		lp := root.Sub(fmt.Sprintf("layer%d", i))
		b1 := 1 / math.Sqrt(float64(d))
		b2 := 1 / math.Sqrt(float64(f))
		l := &layer{
			attn:  expirespan.NewAttention(lp.Sub("attn"), acfg),
			norm1: newLayerNorm(lp.Sub("norm1"), d),
			norm2: newLayerNorm(lp.Sub("norm2"), d),
			w1:    lp.MustNewVar("ffn_w1", []int64{d, f}, nn.NewUniformInit(-b1, b1)),
			b1:    lp.MustNewVar("ffn_b1", []int64{f}, nn.NewUniformInit(-b1, b1)),
			w2:    lp.MustNewVar("ffn_w2", []int64{f, d}, nn.NewUniformInit(-b2*outScale, b2*outScale)),
			b2:    lp.MustNewVar("ffn_b2", []int64{d}, nn.NewUniformInit(-b2, b2)),
		}
		m.layers = append(m.layers, l)
	}
	if cfg.PreNorm {
		m.normF = newLayerNorm(root.Sub("norm_final"), d)
	}
	bo := 1 / math.Sqrt(float64(d))
	m.wOut = root.MustNewVar("out_w", []int64{d, v}, nn.NewUniformInit(-bo, bo))
	m.bOut = root.MustNewVar("out_b", []int64{v}, nn.NewUniformInit(-bo, bo))
	return m, nil
}

// Device is where the model's weights live.
func (m *Model) Device() gotch.Device { return m.dev }

// Parameters returns the trainable tensors in a stable order (by name).
func (m *Model) Parameters() []*ts.Tensor {
	named := m.NamedParameters()
	out := make([]*ts.Tensor, len(named))
	for i, n := range named {
		out[i] = n.Tensor
	}
	return out
}

// NumParams counts the model's parameters.
func (m *Model) NumParams() int64 {
	var n int64
	for _, t := range m.Parameters() {
		c := int64(1)
		for _, s := range t.MustSize() {
			c *= s
		}
		n += c
	}
	return n
}

// Memory is the model's memory for B streams: one expirespan.Memory per layer, and the
// pruning rule they follow.
type Memory struct {
	Layers []*expirespan.Memory
	Rule   expirespan.Rule
}

// NewMemory returns the memory at the start of B streams. Batches prune with the
// reference's rectangular rule, one stream exactly per key, the baseline keeps the last
// MaxSpan keys.
func (m *Model) NewMemory(batch int) *Memory {
	mem := &Memory{Rule: expirespan.Rectangular}
	switch {
	case !m.Cfg.Expire:
		mem.Rule = expirespan.LastL
	case batch == 1:
		mem.Rule = expirespan.PerKey
	}
	for range m.layers {
		mem.Layers = append(mem.Layers, expirespan.NewMemory(batch, m.Cfg.EffectiveInitCache(), m.Cfg.Dim, m.dev))
	}
	return mem
}

// Batch is the number of streams.
func (mem *Memory) Batch() int { return mem.Layers[0].B }

// Live returns the number of keys each layer's memory holds (per stream).
func (mem *Memory) Live() []float64 {
	out := make([]float64, len(mem.Layers))
	for i, l := range mem.Layers {
		out[i] = float64(l.Len)
	}
	return out
}

// Dropped returns how many keys all layers have dropped so far, over all streams.
func (mem *Memory) Dropped() int64 {
	var n int64
	for _, l := range mem.Layers {
		n += l.Dropped
	}
	return n
}

// Drop frees the memory's tensors.
func (mem *Memory) Drop() {
	for _, l := range mem.Layers {
		l.Drop()
	}
}

// Stats are the per-layer counters that training and evaluation report.
type Stats struct {
	MeanSpan []float64 `json:"mean_span"` // mean predicted span of the keys seen by the block
	MaxSpan  []float64 `json:"max_span"`
	Live     []float64 `json:"live"` // keys kept in memory after the block, per stream
}

// StepResult is what one block gives back.
type StepResult struct {
	TaskLoss *ts.Tensor  // scalar: mean NLL in nats over the block's B×T targets
	SpanLoss *ts.Tensor  // scalar: α-scaled span loss summed over layers (0 outside training)
	TokenNLL *ts.Tensor  // B×T per-token NLL in nats, detached
	Spans    [][]float32 // per layer, the B×N spans of the keys the block attended over (for dumps)
	Stats    Stats

	backward func(scale float64) error // set by the recomputing path
}

// Backward back-propagates scale·(TaskLoss + SpanLoss) into the parameters' gradients
// (accumulating). A block with no graph (nothing scored, no span loss) does nothing.
func (r *StepResult) Backward(scale float64) error {
	if r.backward != nil {
		return r.backward(scale)
	}
	total := r.TaskLoss
	if r.SpanLoss != nil {
		total = r.TaskLoss.MustAdd(r.SpanLoss, false)
		defer total.MustDrop()
	}
	if !total.MustRequiresGrad() {
		return nil
	}
	if scale != 1 {
		total = total.MustMulScalar(ts.FloatScalar(scale), false)
		defer total.MustDrop()
	}
	return total.Backward()
}

// Drop frees the result's tensors.
func (r *StepResult) Drop() {
	for _, t := range []*ts.Tensor{r.TaskLoss, r.SpanLoss, r.TokenNLL} {
		if t != nil {
			t.MustDrop()
		}
	}
}

// Step runs one block: block holds B×(T+1) token ids (inputs are the first T columns,
// targets the last T). The memory is read, then updated in place (detached and pruned).
// In training, rng draws the random span shortening (when the config asks for it) and
// dropout is on.
func (m *Model) Step(mem *Memory, block *ts.Tensor, train bool, rng *rand.Rand) (*StepResult, error) {
	return m.StepMasked(mem, block, nil, train, rng)
}

// StepMasked is Step for datasets that score only some targets (the copy task): mask is
// B×T, 1 where a target counts, and TaskLoss is Σ nll·mask / Σ mask (0, with a graph, when
// the block scores nothing: the memory must still be carried through it). A nil mask
// scores every target.
func (m *Model) StepMasked(mem *Memory, block, mask *ts.Tensor, train bool, rng *rand.Rand) (*StepResult, error) {
	sz := block.MustSize()
	if len(sz) != 2 || sz[1] < 2 {
		return nil, fmt.Errorf("lm: block of shape %v: want B×(T+1) with T ≥ 1", sz)
	}
	if int(sz[0]) != mem.Batch() {
		return nil, fmt.Errorf("lm: block of %d streams for a memory of %d", sz[0], mem.Batch())
	}
	t := sz[1] - 1
	if mask != nil {
		if msz := mask.MustSize(); len(msz) != 2 || msz[0] != sz[0] || msz[1] != t {
			return nil, fmt.Errorf("lm: mask of shape %v for a block of %d×%d targets", msz, sz[0], t)
		}
	}
	if train && m.Cfg.Recompute {
		return m.stepRecompute(mem, block, mask, rng)
	}
	in := block.MustNarrow(1, 0, t, false)
	tgt := block.MustNarrow(1, 1, t, false)
	logp, spanLoss, res, err := m.forward(mem, in, train, rng)
	in.MustDrop()
	if err != nil {
		tgt.MustDrop()
		return nil, err
	}
	res.TaskLoss, res.TokenNLL = taskLoss(logp, tgt, mask)
	res.SpanLoss = spanLoss
	return res, nil
}

// taskLoss turns log-probabilities (B×T×V, freed) and targets (B×T, freed) into the mean
// NLL over the scored targets (all of them when mask is nil), with its graph, and the
// detached per-token NLL.
func taskLoss(logp, tgt, mask *ts.Tensor) (loss, tokenNLL *ts.Tensor) {
	tgt3 := tgt.MustUnsqueeze(2, true)
	nll := logp.MustGather(2, tgt3, false, true).MustSqueezeDim(2, true).MustNeg(true)
	tgt3.MustDrop()
	if mask == nil {
		loss = nll.MustMean(gotch.Float, false)
	} else {
		scored := mask.MustSum(gotch.Float, false).Float64Values()[0]
		loss = nll.MustMul(mask, false).MustSum(gotch.Float, true).MustMulScalar(ts.FloatScalar(1/math.Max(scored, 1)), true)
	}
	return loss, nll.MustDetach(true)
}

// Forward returns the B×T×V log-probabilities of the next token after each input token
// (B×T ids), carrying the memory as Step does. The span loss is not computed.
func (m *Model) Forward(mem *Memory, input *ts.Tensor, train bool, rng *rand.Rand) (*ts.Tensor, *Stats, error) {
	logp, sl, res, err := m.forward(mem, input, train, rng)
	if err != nil {
		return nil, nil, err
	}
	sl.MustDrop()
	return logp, &res.Stats, nil
}

func (m *Model) forward(mem *Memory, input *ts.Tensor, train bool, rng *rand.Rand) (logp, spanLoss *ts.Tensor, res *StepResult, err error) {
	t := int(input.MustSize()[1])
	shorten := 0.0
	if train && m.Cfg.Expire && m.Cfg.Noisy && rng != nil {
		shorten = max(rng.Float64(), 1e-6)
	}
	res = &StepResult{Stats: Stats{
		MeanSpan: make([]float64, len(m.layers)), MaxSpan: make([]float64, len(m.layers)), Live: make([]float64, len(m.layers)),
	}}
	h := ts.MustEmbedding(m.emb, input, -1, false, false)
	spanLoss = ts.MustZeros([]int64{1}, gotch.Float, m.dev).MustSqueeze(true)
	for i, l := range m.layers {
		out, sl, spans := m.layerForward(l, h, mem.Layers[i], t, train, shorten, mem.Rule, true)
		h.MustDrop()
		h = out
		if sl != nil {
			spanLoss = spanLoss.MustAdd(sl, true)
			sl.MustDrop()
		}
		res.Spans = append(res.Spans, spans)
		res.Stats.MeanSpan[i], res.Stats.MaxSpan[i] = meanMax(spans)
		res.Stats.Live[i] = float64(mem.Layers[i].Len)
	}
	if m.normF != nil {
		hn := m.normF.forward(h)
		h.MustDrop()
		h = hn
	}
	logits := h.MustMatmul(m.wOut, true).MustAdd(m.bOut, true)
	logp = logits.MustLogSoftmax(-1, gotch.Float, true)
	return logp, spanLoss, res, nil
}

func meanMax(xs []float32) (mean, mx float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var s float64
	for _, x := range xs {
		s += float64(x)
		mx = max(mx, float64(x))
	}
	return s / float64(len(xs)), mx
}

// layerForward runs one layer over a block: attention over [memory; block], residuals,
// norms and the feed-forward block, then the memory update. It returns the layer's output,
// its span loss (training with expiry only) and the keys' spans.
func (m *Model) layerForward(l *layer, h *ts.Tensor, mem *expirespan.Memory, t int, train bool, shorten float64, rule expirespan.Rule, update bool) (*ts.Tensor, *ts.Tensor, []float32) {
	x := h
	if mem.Len > 0 {
		x = ts.MustCat([]*ts.Tensor{mem.H, h}, 1)
	}
	ages := mem.KeyAges(t)
	xn, hn := x, h
	if m.Cfg.PreNorm {
		xn = l.norm1.forward(x)
		hn = xn.MustNarrow(1, int64(mem.Len), int64(t), false)
	}
	var e *ts.Tensor
	var spans []float32
	if m.Cfg.Expire {
		e = l.attn.Spans(xn)
		spans = expirespan.Float32s(e)
	}
	mk := l.attn.BuildMasks(e, ages, mem.B, t, shorten)
	k, v := l.attn.KeysValues(xn)
	a := l.attn.Attend(hn, k, v, m.pos, mk, train)
	k.MustDrop()
	v.MustDrop()
	var sl *ts.Tensor
	if train && m.Cfg.Expire && m.Cfg.Alpha > 0 {
		sl = l.attn.SpanLoss(mk, t)
	}
	mk.Drop()
	if e != nil {
		e.MustDrop()
	}
	if m.Cfg.PreNorm {
		xn.MustDrop()
		if hn != xn {
			hn.MustDrop()
		}
	}
	out := l.residual(h, a, m.Cfg.PreNorm, train)
	a.MustDrop()
	if update {
		mem.Update(x, ages, spans, t, rule, float64(m.Cfg.Ramp), m.Cfg.Block, m.Cfg.MaxSpan)
	}
	if x != h {
		x.MustDrop()
	}
	return out, sl, spans
}

// residual finishes a layer from its input h and attention output a: post-norm
// LN2(h2 + FFN(h2)) with h2 = LN1(h + a), or pre-norm h2 + FFN(LN2(h2)) with h2 = h + a.
func (l *layer) residual(h, a *ts.Tensor, preNorm, train bool) *ts.Tensor {
	if preNorm {
		h2 := h.MustAdd(a, false)
		n2 := l.norm2.forward(h2)
		f := l.ffn(n2, train)
		n2.MustDrop()
		out := h2.MustAdd(f, true)
		f.MustDrop()
		return out
	}
	r1 := h.MustAdd(a, false)
	h2 := l.norm1.forward(r1)
	r1.MustDrop()
	f := l.ffn(h2, train)
	r2 := h2.MustAdd(f, false)
	h2.MustDrop()
	f.MustDrop()
	out := l.norm2.forward(r2)
	r2.MustDrop()
	return out
}

// ffn is W2·dropout(ReLU(W1 x + b1)) + b2.
func (l *layer) ffn(x *ts.Tensor, train bool) *ts.Tensor {
	u := x.MustMatmul(l.w1, false).MustAdd(l.b1, true).MustRelu(true)
	if train {
		if p := l.attn.Config().Dropout; p > 0 {
			u = ts.MustDropout(u, p, true)
		}
	}
	return u.MustMatmul(l.w2, true).MustAdd(l.b2, true)
}
