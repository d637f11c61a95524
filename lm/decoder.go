package lm

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/expirespan"
	"xspan/internal/torchrt"
)

// Decoder generates from one stream: a prompt is fed in blocks, then tokens one at a time
// against per-layer cached keys and values, computed once per memory, when it is created.
// Every memory is dropped at the exact step it expires (unless pruning is off).
type Decoder struct {
	m      *Model
	mem    *Memory
	tokens int64
}

// NewDecoder starts a stream with the model's initial memory.
func (m *Model) NewDecoder() *Decoder {
	return &Decoder{m: m, mem: m.NewMemory(1)}
}

// SetPruning turns memory pruning on (the default) or off (every key kept, for
// comparison). The baseline always keeps its last MaxSpan keys.
func (d *Decoder) SetPruning(on bool) {
	switch {
	case !d.m.Cfg.Expire:
		d.mem.Rule = expirespan.LastL
	case on:
		d.mem.Rule = expirespan.PerKey
	default:
		d.mem.Rule = expirespan.KeepAll
	}
}

// Live returns the number of memories each layer holds.
func (d *Decoder) Live() []int {
	out := make([]int, len(d.mem.Layers))
	for i, l := range d.mem.Layers {
		out[i] = l.Len
	}
	return out
}

// Dropped returns how many memories have been dropped so far, over all layers.
func (d *Decoder) Dropped() int64 { return d.mem.Dropped() }

// Tokens returns how many tokens have been fed.
func (d *Decoder) Tokens() int64 { return d.tokens }

// Close frees the decoder's memory.
func (d *Decoder) Close() { d.mem.Drop() }

// Feed feeds tokens and returns the log-probabilities of the token that follows them.
// Several tokens go through the block path (in blocks of the model's block length), one
// token through the cached keys and values.
func (d *Decoder) Feed(tokens []int64) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("lm: Feed needs at least one token")
	}
	for _, t := range tokens {
		if t < 0 || t >= int64(d.m.Cfg.Vocab) {
			return nil, fmt.Errorf("lm: token id %d outside the vocabulary of %d", t, d.m.Cfg.Vocab)
		}
	}
	var out []float32
	var err error
	ts.NoGrad(func() {
		if len(tokens) == 1 {
			out = d.step(tokens[0])
			return
		}
		for start := 0; start < len(tokens) && err == nil; start += d.m.Cfg.Block {
			end := min(start+d.m.Cfg.Block, len(tokens))
			out, err = d.block(tokens[start:end])
		}
	})
	if err != nil {
		return nil, err
	}
	d.tokens += int64(len(tokens))
	return out, nil
}

// block runs tokens through the model's block path and returns the last position's
// log-probs.
func (d *Decoder) block(tokens []int64) ([]float32, error) {
	n := int64(len(tokens))
	in := torchrt.MustFromSlice(tokens, []int64{1, n}, d.m.dev)
	logp, spanLoss, _ := d.m.forward(d.mem, in, d.m.layerStep(d.mem, StepOptions{}))
	in.MustDrop()
	spanLoss.MustDrop()
	last := logp.MustSelect(1, n-1, true)
	vals := torchrt.Float32s(last)
	last.MustDrop()
	return vals, nil
}

// step runs one token through every layer: its query attends over the layer's cached
// keys and values (made once per memory, when the block path created it), and its own
// key, value and span join the cache. Each layer computes what layerForward does, for
// one query.
func (d *Decoder) step(token int64) []float32 {
	m := d.m
	in := torchrt.MustFromSlice([]int64{token}, []int64{1, 1}, m.dev)
	h := ts.MustEmbedding(m.emb, in, -1, false, false)
	in.MustDrop()
	pruning := m.pruning(d.mem.Rule)
	for i, l := range m.layers {
		mem := d.mem.Layers[i]
		if !mem.HasKV() && mem.Len > 0 {
			xn := m.attnInput(l, mem.H)
			k, v := l.attn.KeysValues(xn)
			e, spans := m.spans(l, xn)
			if e != nil {
				e.MustDrop()
			} else {
				spans = make([]float32, mem.Len)
			}
			if xn != mem.H {
				xn.MustDrop()
			}
			mem.SetKV(k, v, spans)
		}
		hn := m.attnInput(l, h)
		var a *ts.Tensor
		if mem.Len == 0 {
			a = ts.MustZeros(h.MustSize(), gotch.Float, m.dev)
		} else {
			var e *ts.Tensor
			if m.Cfg.Expire {
				e = torchrt.MustFromSlice(mem.Spans, []int64{1, int64(mem.Len)}, m.dev)
			}
			if m.Cfg.EffectiveAttention() == AttentionFused {
				a, _ = l.attn.AttendFused(hn, mem.K, mem.V, m.pos, e, mem.KeyAges(0), 1, 1, 0, false, false)
			} else {
				mk := l.attn.BuildMasks(e, mem.KeyAges(0), 1, 1, 0)
				a = l.attn.Attend(hn, mem.K, mem.V, m.pos, mk, false)
				mk.Drop()
			}
			if e != nil {
				e.MustDrop()
			}
		}
		kNew, vNew := l.attn.KeysValues(hn)
		var span float32
		if e, spans := m.spans(l, hn); e != nil {
			e.MustDrop()
			span = spans[0]
		}
		out := l.residual(h, a, m.Cfg.PreNorm, false)
		if hn != h {
			hn.MustDrop()
		}
		a.MustDrop()
		mem.AppendStep(h, kNew, vNew, span, pruning)
		kNew.MustDrop()
		vNew.MustDrop()
		h.MustDrop()
		h = out
	}
	logp := m.head(h, true)
	vals := torchrt.Float32s(logp)
	logp.MustDrop()
	return vals
}
