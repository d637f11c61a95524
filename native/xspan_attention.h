// xspan's fused Expire-Span attention (native/xspan_attention.cpp): forward and backward
// in one autograd function that keeps no score-sized tensor between them.
#ifndef XSPAN_ATTENTION_H
#define XSPAN_ATTENTION_H
#include <stdint.h>

#include "torch_api.h"

#ifdef __cplusplus
extern "C" {
#endif

// Queries in a dropout group: both attention paths draw the dropout mask of every group of
// this many queries from the seed and the group's index, so that they draw the same mask.
#define XSPAN_DROPOUT_GROUP 16

// xspan_draw_seed draws a seed from libtorch's default CPU generator (so that seeding
// libtorch fixes it).
int64_t xspan_draw_seed(void);

// xspan_group_dropout applies dropout p to att (B×K×T×N) with the grouped masks of seed:
// att · keep / (1 − p), with a graph. out[0] is the result.
void xspan_group_dropout(tensor *out, tensor att, double p, int64_t seed);

// xspan_expire_attention is the fused attention. q: B×K×T×d_h (already scaled by 1/√d_h),
// k, v: B×K×N×d_h, e: B×N spans (NULL without expiry), ages: B×N (float, the keys' ages
// C), pos: d_h×P position table, applied to key slots from pos_from on by each key's true
// distance j + C (1…P). window > 0 hides keys at a distance over window (the
// Transformer-XL baseline: each query sees exactly its window previous positions). ramp: R; cap > 0 caps spans for the mask and the loss (random
// shortening); span_coef: the span loss's factor α/(R·T·B) (0: none); dropout p with seed;
// chunk: queries per block of work (≤ 0: chosen from the memory budget). out[0] is the
// B×K×T×d_h output (zero for queries that see no key), out[1] the span loss (a scalar).
void xspan_expire_attention(tensor *out, tensor q, tensor k, tensor v, tensor e, tensor ages, tensor pos,
                            int64_t pos_from, int64_t window, double ramp, double cap, double span_coef,
                            double dropout, int64_t seed, int64_t chunk);

// xspan_attention_chunk is the chunk the fused attention picks for these sizes.
int64_t xspan_attention_chunk(int64_t b, int64_t heads, int64_t t, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
