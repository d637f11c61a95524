package native

//#include <stdbool.h>
//#include <stdint.h>
//#include <stdlib.h>
//#include "torch_api.h"
//#include "xspan_attention.h"
import "C"

import (
	"unsafe"

	"github.com/sugarme/gotch/ts"
)

// The fused Expire-Span attention (xspan's native/xspan_attention.h). Its calls fail as
// gotch's Must wrappers do: with a panic that torchrt.Recover turns into an error.

// DropoutGroup is the number of queries whose dropout mask one seed and group index draw.
const DropoutGroup = C.XSPAN_DROPOUT_GROUP

// DrawSeed draws a seed from libtorch's default CPU generator.
func DrawSeed() int64 {
	s := int64(C.xspan_draw_seed())
	mustOK()
	return s
}

// GroupDropout applies dropout p to B×K×T×N attention weights with the masks that seed
// draws per group of queries, as the fused attention does, with a graph.
func GroupDropout(att *ts.Tensor, p float64, seed int64) *ts.Tensor {
	out := (*C.tensor)(C.malloc(C.size_t(unsafe.Sizeof(uintptr(0)))))
	defer C.free(unsafe.Pointer(out))
	*out = nil
	C.xspan_group_dropout(out, handle(att), C.double(p), C.int64_t(seed))
	keepAlive(att)
	mustOK()
	return wrap(*out)
}

// Attention is one call of the fused attention: queries Q (B×K×T×d_h, scaled), keys and
// values K, V (B×K×N×d_h), spans E (B×N, nil without expiry), ages Ages (B×N) and the
// position terms Pos.
type Attention struct {
	Q, K, V, E, Ages, Pos *ts.Tensor
	PosFrom, Window       int64   // the first key slot within reach of a position term; the baseline's window (0: none)
	Ramp, Cap, SpanCoef   float64 // the expiry ramp, the span cap (0: none), the span loss's coefficient
	Dropout               float64
	Seed, Chunk           int64 // the dropout's seed; queries per block of work (0: the library picks)
}

// ExpireAttention runs the fused attention and returns the B×K×T×d_h output and the span
// loss.
func ExpireAttention(a Attention) (out, loss *ts.Tensor) {
	res := (*[2]C.tensor)(C.malloc(2 * C.size_t(unsafe.Sizeof(uintptr(0)))))
	defer C.free(unsafe.Pointer(res))
	res[0], res[1] = nil, nil
	C.xspan_expire_attention(&res[0], handle(a.Q), handle(a.K), handle(a.V), handle(a.E), handle(a.Ages), handle(a.Pos),
		C.int64_t(a.PosFrom), C.int64_t(a.Window), C.double(a.Ramp), C.double(a.Cap), C.double(a.SpanCoef),
		C.double(a.Dropout), C.int64_t(a.Seed), C.int64_t(a.Chunk))
	keepAlive(a.Q, a.K, a.V, a.E, a.Ages, a.Pos)
	mustOK()
	return wrap(res[0]), wrap(res[1])
}

// AttentionChunk is the number of queries per block of work the fused attention picks for
// b streams, heads heads, t queries and n keys.
func AttentionChunk(b, heads, t, n int64) int64 {
	return int64(C.xspan_attention_chunk(C.int64_t(b), C.int64_t(heads), C.int64_t(t), C.int64_t(n)))
}
