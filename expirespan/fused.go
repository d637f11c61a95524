package expirespan

import (
	"math"
	"os"
	"strconv"

	"github.com/sugarme/gotch/ts"

	"xspan/internal/native"
	"xspan/internal/torchrt"
)

// Paths of the attention, as the model config's "attention" key names them.
const (
	// PathComposed builds the masks (BuildMasks), then attends (Attend) and computes the
	// span loss (SpanLoss) with libtorch ops whose intermediate tensors autograd keeps:
	// several B×K×T×N tensors per layer. It is the reference for the fused path's tests.
	PathComposed = "composed"
	// PathFused runs AttendFused: one autograd function in the native library that keeps
	// no score-sized tensor between forward and backward.
	PathFused = "fused"
)

// DropoutGroup is the number of queries whose attention-dropout mask is drawn from one
// seed and the group's index, in both paths: given the same seed, they drop the same
// weights.
const DropoutGroup = native.DropoutGroup

// groupDropout is dropout p on B×K×T×N weights with the masks that seed draws per group
// of queries, with a graph.
func groupDropout(att *ts.Tensor, p float64, seed int64, del bool) *ts.Tensor {
	out := native.GroupDropout(att, p, seed)
	if del {
		att.MustDrop()
	}
	return out
}

// posFrom returns N − W: the first key slot of b streams of n keys with ages ages that
// is at distance ≤ P from some query (ages fall along the slots, so those are a suffix).
func posFrom(ages []float32, b, n, p int) int {
	w := 0
	for s := 0; s < b; s++ {
		k := 0
		for i := n - 1; i >= 0 && float64(ages[s*n+i]) <= float64(p); i-- {
			k++
		}
		w = max(w, k)
	}
	return n - w
}

// AttendFused is BuildMasks, Attend and SpanLoss in one: the attention output (before
// the residual) of queries from h (B×T×d) over keys and values k, v (B×K×N×d_h) with
// spans e (B×N, nil without expiry) and ages ages, and the span loss when spanLoss is set
// (nil otherwise). It computes what the composed path computes, to float32 rounding, and
// draws the same dropout masks.
func (a *Attention) AttendFused(h, k, v, pos, e *ts.Tensor, ages []float32, b, t int, shorten float64, train, spanLoss bool) (out, loss *ts.Tensor) {
	dh := int64(a.cfg.Dim / a.cfg.Heads)
	n := len(ages) / b
	q := a.splitHeads(h.MustMatmul(a.Wq, false), true).MustMulScalar(ts.FloatScalar(1/math.Sqrt(float64(dh))), true)
	defer q.MustDrop()
	c := torchrt.MustFromSlice(ages, []int64{int64(b), int64(n)}, a.Wq.MustDevice())
	defer c.MustDrop()
	call := native.Attention{Q: q, K: k, V: v, Ages: c, Pos: pos, Window: int64(a.cfg.Window), Chunk: fusedChunk}
	if a.cfg.Expire && e != nil {
		call.E = e
		if shorten > 0 {
			call.Cap = shorten * a.cfg.MaxSpan
		}
		if spanLoss {
			call.SpanCoef = a.cfg.Alpha / (a.cfg.Ramp * float64(t) * float64(b))
		}
	}
	call.Ramp = a.cfg.Ramp
	if call.Ramp <= 0 {
		call.Ramp = 1 // no expiry: unused
	}
	if train && a.cfg.Dropout > 0 {
		// From libtorch's generator: seeding libtorch, as the recomputing path does, repeats it.
		call.Dropout, call.Seed = a.cfg.Dropout, native.DrawSeed()
	}
	call.PosFrom = int64(posFrom(ages, b, n, a.cfg.PosWindow))
	o, l := native.ExpireAttention(call)
	if spanLoss && a.cfg.Expire && e != nil {
		loss = l
	} else {
		l.MustDrop()
	}
	o = o.MustTranspose(1, 2, true).MustContiguous(true)
	os := o.MustSize()
	o = o.MustView([]int64{os[0], os[1], os[2] * os[3]}, true)
	return o.MustMatmul(a.Wo, true), loss
}

// fusedChunk is the number of queries per block of the fused attention's work; 0 lets
// the native library pick it from its memory budget. Tests set it to exercise several
// blocks; XSPAN_ATTENTION_CHUNK sets it for a process (for measuring, a multiple of
// DropoutGroup).
var fusedChunk, _ = strconv.ParseInt(os.Getenv("XSPAN_ATTENTION_CHUNK"), 10, 64)
