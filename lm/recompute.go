package lm

import (
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/expirespan"
	"xspan/internal/torchrt"
)

// stepRecompute is Step for training with Cfg.Recompute: the forward pass runs
// without a graph, keeping only each layer's input and the memory it read; Backward then
// recomputes one layer at a time with a graph, from the last to the first, so that the
// activations of a single layer are alive at once instead of all of them. The memory is
// updated by the forward pass exactly as without recomputation.
func (m *Model) stepRecompute(mem *Memory, block *ts.Tensor, o StepOptions) (*StepResult, error) {
	t := block.MustSize()[1] - 1
	in := block.MustNarrow(1, 0, t, false)
	tgt := block.MustNarrow(1, 1, t, false)
	ls := m.layerStep(mem, o)
	rng := o.RNG
	// Dropout must draw the same masks when a layer is recomputed: each layer runs from a
	// seed of its own, both times.
	seeds := make([]int64, len(m.layers))
	if m.Cfg.Dropout > 0 && rng != nil {
		for i := range seeds {
			seeds[i] = int64(rng.Uint64() >> 1)
		}
	}
	type saved struct {
		input *ts.Tensor
		mem   *expirespan.Memory // what the layer read: its memory before the update
	}
	keep := make([]saved, len(m.layers))
	res := &StepResult{Stats: newStats(len(m.layers))}
	var hL *ts.Tensor
	spanLoss := 0.0
	func() {
		defer torchrt.NoGrad()()
		h := ts.MustEmbedding(m.emb, in, -1, false, false)
		for i, l := range m.layers {
			lm := mem.Layers[i]
			before := &expirespan.Memory{B: lm.B, Len: lm.Len, Ages: lm.Ages}
			if lm.H != nil {
				before.H = lm.H.MustShallowClone()
			}
			keep[i] = saved{input: h, mem: before}
			if m.Cfg.Dropout > 0 {
				torchrt.SeedTorch(seeds[i])
			}
			out, sl, spans := m.layerForward(l, h, lm, int(t), ls)
			if sl != nil {
				spanLoss += torchrt.Float64(sl)
				sl.MustDrop()
			}
			h = out
			res.addLayer(i, spans, lm.Len)
		}
		hL = h
	}()
	// The head runs with a graph from a leaf that stands for the last layer's output.
	top := hL.MustDetach(true).MustSetRequiresGrad(true, true)
	logp := m.head(top, false)
	if o.LogProbs {
		res.LogProbs = logp.MustDetach(false)
	}
	res.TaskLoss, res.TokenNLL = taskLoss(logp, tgt, o.Mask)
	res.SpanLoss = ts.MustOfSlice([]float32{float32(spanLoss)}).MustSqueeze(true)

	res.backward = func(scale float64) error {
		defer func() {
			top.MustDrop()
			in.MustDrop()
			for _, k := range keep {
				k.input.MustDrop()
				if k.mem.H != nil {
					k.mem.H.MustDrop()
				}
			}
		}()
		loss := res.TaskLoss.MustMulScalar(ts.FloatScalar(scale), false)
		if err := loss.Backward(); err != nil {
			return err
		}
		loss.MustDrop()
		g := top.MustGrad(false).MustDetach(true)
		for i := len(m.layers) - 1; i >= 0; i-- {
			x := keep[i].input.MustDetach(false).MustSetRequiresGrad(true, true)
			if m.Cfg.Dropout > 0 {
				torchrt.SeedTorch(seeds[i])
			}
			redo := ls
			redo.update = false
			out, sl, _ := m.layerForward(m.layers[i], x, keep[i].mem, int(t), redo)
			// d(loss)/d(params of layer i) = ⟨g, d out/d params⟩: back-propagate out·g.
			l := out.MustMul(g, true).MustSum(gotch.Float, true)
			if sl != nil {
				l = l.MustAdd(sl.MustMulScalar(ts.FloatScalar(scale), true), true)
			}
			if err := l.Backward(); err != nil {
				return err
			}
			l.MustDrop()
			g.MustDrop()
			g = x.MustGrad(false).MustDetach(true)
			x.MustDrop()
		}
		h0 := ts.MustEmbedding(m.emb, in, -1, false, false)
		l := h0.MustMul(g, true).MustSum(gotch.Float, true)
		g.MustDrop()
		err := l.Backward()
		l.MustDrop()
		return err
	}
	return res, nil
}
