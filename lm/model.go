// Package lm is xspan's language model: token embedding, N Expire-Span Transformer layers
// (post-norm, or pre-norm), and an untied output layer with log-softmax. Config holds every
// hyperparameter; Model.Step runs one block with the memory carried across calls (the one
// block path: training, evaluation and prompts); Decoder generates one token at a time
// against cached keys and values.
package lm

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"xspan/expirespan"
	"xspan/internal/torchrt"
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
		Dim: cfg.Dim, Heads: cfg.Heads, PosWindow: p, Expire: cfg.Expire, Window: cfg.AttentionWindow(),
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
			// Pre-norm scales the FFN's output layer, bias too (as the reference does).
			b2: lp.MustNewVar("ffn_b2", []int64{d}, nn.NewUniformInit(-b2*outScale, b2*outScale)),
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
	TaskLoss *ts.Tensor  // scalar: mean NLL in nats over the block's scored targets
	SpanLoss *ts.Tensor  // scalar: α-scaled span loss summed over layers (0 outside training)
	TokenNLL *ts.Tensor  // B×T per-token NLL in nats, detached
	LogProbs *ts.Tensor  // B×T×V log-probabilities, detached; only with StepOptions.LogProbs
	Spans    [][]float32 // per layer, the B×N spans of the keys the block attended over
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
	for _, t := range []*ts.Tensor{r.TaskLoss, r.SpanLoss, r.TokenNLL, r.LogProbs} {
		if t != nil {
			t.MustDrop()
		}
	}
}

// StepOptions say how Step runs a block and what it returns beyond the losses.
type StepOptions struct {
	// Train turns dropout on, and the random span shortening when the config asks for
	// it, drawn from RNG; with Cfg.Recompute, training recomputes layers in Backward.
	Train bool
	RNG   *rand.Rand
	// Mask (B×T, 1 where a target counts) scores only some targets (the copy task):
	// TaskLoss is then Σ nll·mask / Σ mask (0, with a graph, when the block scores
	// nothing: the memory must still be carried through it). nil scores every target.
	Mask *ts.Tensor
	// LogProbs keeps the log-probabilities in StepResult.LogProbs (for predictions).
	LogProbs bool
}

// Step runs one block: block holds B×(T+1) token ids (inputs are the first T columns,
// targets the last T). The memory is read, then updated in place (detached and pruned).
// It is the model's one block path: training, evaluation and a decoder's prompt all run
// through it.
func (m *Model) Step(mem *Memory, block *ts.Tensor, o StepOptions) (*StepResult, error) {
	sz := block.MustSize()
	if len(sz) != 2 || sz[1] < 2 {
		return nil, fmt.Errorf("lm: block of shape %v: want B×(T+1) with T ≥ 1", sz)
	}
	if int(sz[0]) != mem.Batch() {
		return nil, fmt.Errorf("lm: block of %d streams for a memory of %d", sz[0], mem.Batch())
	}
	t := sz[1] - 1
	if o.Mask != nil {
		if msz := o.Mask.MustSize(); len(msz) != 2 || msz[0] != sz[0] || msz[1] != t {
			return nil, fmt.Errorf("lm: mask of shape %v for a block of %d×%d targets", msz, sz[0], t)
		}
	}
	if o.Train && m.Cfg.Recompute {
		return m.stepRecompute(mem, block, o)
	}
	in := block.MustNarrow(1, 0, t, false)
	tgt := block.MustNarrow(1, 1, t, false)
	logp, spanLoss, res := m.forward(mem, in, m.layerStep(mem, o))
	in.MustDrop()
	if o.LogProbs {
		res.LogProbs = logp.MustDetach(false)
	}
	res.TaskLoss, res.TokenNLL = taskLoss(logp, tgt, o.Mask)
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
		scored := torchrt.Float64(mask.MustSum(gotch.Float, false))
		loss = nll.MustMul(mask, false).MustSum(gotch.Float, true).MustMulScalar(ts.FloatScalar(1/math.Max(scored, 1)), true)
	}
	return loss, nll.MustDetach(true)
}

// layerStep is how the layers run over one block.
type layerStep struct {
	train   bool
	shorten float64 // random span shortening, a fraction of L (0: none)
	pruning expirespan.Pruning
	update  bool // update the memory (false when a layer is recomputed)
	// cached: the memory keeps each key's projected key, value and span (decoding, batch
	// 1), so that a block projects only its own tokens.
	cached bool
}

// layerStep draws the block's random span shortening (training with Cfg.Noisy) and says
// how mem prunes.
func (m *Model) layerStep(mem *Memory, o StepOptions) layerStep {
	ls := layerStep{train: o.Train, pruning: m.pruning(mem.Rule), update: true}
	if o.Train && m.Cfg.Expire && m.Cfg.Noisy && o.RNG != nil {
		ls.shorten = max(o.RNG.Float64(), 1e-6)
	}
	return ls
}

// pruning is the model's pruning settings under rule.
func (m *Model) pruning(rule expirespan.Rule) expirespan.Pruning {
	return expirespan.Pruning{Rule: rule, Ramp: float64(m.Cfg.Ramp), Block: m.Cfg.Block, Last: m.Cfg.MaxSpan}
}

// forward runs the layers and the head over B×T input ids with the memory carried, and
// returns the B×T×V log-probabilities, the span loss and the spans and statistics.
func (m *Model) forward(mem *Memory, input *ts.Tensor, ls layerStep) (logp, spanLoss *ts.Tensor, res *StepResult) {
	t := int(input.MustSize()[1])
	res = &StepResult{Stats: newStats(len(m.layers))}
	h := ts.MustEmbedding(m.emb, input, -1, false, false)
	spanLoss = ts.MustZeros([]int64{1}, gotch.Float, m.dev).MustSqueeze(true)
	for i, l := range m.layers {
		out, sl, spans := m.layerForward(l, h, mem.Layers[i], t, ls)
		h.MustDrop()
		h = out
		if sl != nil {
			spanLoss = spanLoss.MustAdd(sl, true)
			sl.MustDrop()
		}
		res.addLayer(i, spans, mem.Layers[i].Len)
	}
	return m.head(h, true), spanLoss, res
}

// head turns the last layer's output (B×T×d) into log-probabilities (B×T×V): the final
// norm (pre-norm), the output layer and log-softmax.
func (m *Model) head(h *ts.Tensor, del bool) *ts.Tensor {
	if m.normF != nil {
		hn := m.normF.forward(h)
		if del {
			h.MustDrop()
		}
		h, del = hn, true
	}
	return h.MustMatmul(m.wOut, del).MustAdd(m.bOut, true).MustLogSoftmax(-1, gotch.Float, true)
}

func newStats(layers int) Stats {
	return Stats{MeanSpan: make([]float64, layers), MaxSpan: make([]float64, layers), Live: make([]float64, layers)}
}

// addLayer records layer i's spans and its memory's length after the block.
func (r *StepResult) addLayer(i int, spans []float32, live int) {
	r.Spans = append(r.Spans, spans)
	r.Stats.MeanSpan[i], r.Stats.MaxSpan[i] = meanMax(spans)
	r.Stats.Live[i] = float64(live)
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
// its span loss (training with expiry only) and the keys' spans. It is the one layer path:
// training, evaluation, a decoder's prompt and its tokens one at a time (ls.cached).
func (m *Model) layerForward(l *layer, h *ts.Tensor, mem *expirespan.Memory, t int, ls layerStep) (*ts.Tensor, *ts.Tensor, []float32) {
	x := h
	if mem.Len > 0 {
		x = ts.MustCat([]*ts.Tensor{mem.H, h}, 1)
	}
	keys := expirespan.Keys{X: x, Ages: mem.KeyAges(t)}
	var hn, e *ts.Tensor
	if ls.cached {
		hn, e = m.cachedKeys(l, h, mem, &keys)
	} else {
		hn, e = m.blockKeys(l, h, mem, &keys)
	}
	wantLoss := ls.train && m.Cfg.Expire && m.Cfg.Alpha > 0
	var a, sl *ts.Tensor
	if m.Cfg.EffectiveAttention() == AttentionFused {
		a, sl = l.attn.AttendFused(hn, keys.K, keys.V, m.pos, e, keys.Ages, mem.B, t, ls.shorten, ls.train, wantLoss)
	} else {
		mk := l.attn.BuildMasks(e, keys.Ages, mem.B, t, ls.shorten)
		a = l.attn.Attend(hn, keys.K, keys.V, m.pos, mk, ls.train)
		if wantLoss {
			sl = l.attn.SpanLoss(mk, t)
		}
		mk.Drop()
	}
	if e != nil {
		e.MustDrop()
	}
	hn.MustDrop()
	out := l.residual(h, a, m.Cfg.PreNorm, ls.train)
	a.MustDrop()
	if !ls.cached {
		keys.K.MustDrop()
		keys.V.MustDrop()
		keys.K, keys.V = nil, nil
	}
	if ls.update {
		mem.Update(keys, t, ls.pruning) // takes keys.K and keys.V where cached
	} else if keys.K != nil {
		keys.K.MustDrop()
		keys.V.MustDrop()
	}
	if x != h {
		x.MustDrop()
	}
	return out, sl, keys.Spans
}

// blockKeys projects every key [memory; block] of keys.X and sets their keys, values and
// spans; it returns the block's queries' input and the spans as a tensor (nil without
// expiry), for the caller to free.
func (m *Model) blockKeys(l *layer, h *ts.Tensor, mem *expirespan.Memory, keys *expirespan.Keys) (hn, e *ts.Tensor) {
	xn := m.attnInput(l, keys.X)
	hn = h
	if xn != keys.X {
		hn = xn.MustNarrow(1, int64(mem.Len), h.MustSize()[1], false)
	}
	e, keys.Spans = m.spans(l, xn)
	keys.K, keys.V = l.attn.KeysValues(xn)
	if xn != keys.X {
		xn.MustDrop()
	}
	if hn == h {
		hn = h.MustShallowClone()
	}
	return hn, e
}

// cachedKeys is blockKeys for a memory with a decoding cache: only the block's own tokens
// are projected, and join the cached keys, values and spans (filled first, once per
// memory, where the memory has none).
func (m *Model) cachedKeys(l *layer, h *ts.Tensor, mem *expirespan.Memory, keys *expirespan.Keys) (hn, e *ts.Tensor) {
	if !mem.HasKV() {
		var k, v *ts.Tensor
		var spans []float32
		if mem.Len > 0 {
			xn := m.attnInput(l, mem.H)
			k, v = l.attn.KeysValues(xn)
			var e *ts.Tensor
			if e, spans = m.spans(l, xn); e != nil {
				e.MustDrop()
			}
			if xn != mem.H {
				xn.MustDrop()
			}
		}
		mem.SetKV(k, v, spans)
	}
	hn = m.attnInput(l, h)
	if hn == h {
		hn = h.MustShallowClone()
	}
	kNew, vNew := l.attn.KeysValues(hn)
	keys.K, keys.V = catKeys(mem.K, kNew), catKeys(mem.V, vNew)
	if eNew, spans := m.spans(l, hn); eNew != nil {
		eNew.MustDrop()
		keys.Spans = append(append([]float32(nil), mem.Spans...), spans...)
		e = torchrt.MustFromSlice(keys.Spans, []int64{1, int64(len(keys.Spans))}, m.dev)
	}
	return hn, e
}

// catKeys is [cached; block] along the keys (the block's tensor is freed).
func catKeys(cached, block *ts.Tensor) *ts.Tensor {
	if cached == nil {
		return block
	}
	out := ts.MustCat([]*ts.Tensor{cached, block}, 2)
	block.MustDrop()
	return out
}

// attnInput is what a layer's attention projects from x: LN1(x) with pre-norm (a new
// tensor, for the caller to free), x itself with post-norm.
func (m *Model) attnInput(l *layer, x *ts.Tensor) *ts.Tensor {
	if m.Cfg.PreNorm {
		return l.norm1.forward(x)
	}
	return x
}

// spans returns the spans a layer gives the keys xn, as a tensor and in Go; nil without
// expiry.
func (m *Model) spans(l *layer, xn *ts.Tensor) (*ts.Tensor, []float32) {
	if !m.Cfg.Expire {
		return nil, nil
	}
	e := l.attn.Spans(xn)
	return e, torchrt.Float32s(e)
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
