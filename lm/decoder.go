package lm

import (
	"fmt"

	"xspan/expirespan"
	"xspan/internal/torchrt"
)

// Decoder generates from one stream: a prompt is fed in blocks, then tokens one at a time
// against per-layer cached keys and values (computed once per memory, at the first token
// after a block), through the model's one layer path.
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
	defer torchrt.NoGrad()()
	var out []float32
	var err error
	if len(tokens) == 1 {
		out, err = d.block(tokens, true)
	}
	for start := 0; len(tokens) > 1 && start < len(tokens) && err == nil; start += d.m.Cfg.Block {
		end := min(start+d.m.Cfg.Block, len(tokens))
		out, err = d.block(tokens[start:end], false)
	}
	if err != nil {
		return nil, err
	}
	d.tokens += int64(len(tokens))
	return out, nil
}

// block runs tokens through the model's layers and returns the last position's
// log-probs. A single token (cached) projects only itself against the memory's cached keys
// and values; a longer block recomputes them (and drops the cache).
func (d *Decoder) block(tokens []int64, cached bool) ([]float32, error) {
	n := int64(len(tokens))
	in := torchrt.MustFromSlice(tokens, []int64{1, n}, d.m.dev)
	ls := d.m.layerStep(d.mem, StepOptions{})
	ls.cached = cached
	logp, spanLoss, _ := d.m.forward(d.mem, in, ls)
	in.MustDrop()
	spanLoss.MustDrop()
	last := logp.MustSelect(1, n-1, true)
	vals := torchrt.Float32s(last)
	last.MustDrop()
	return vals, nil
}
