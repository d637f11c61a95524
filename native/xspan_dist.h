// xspan's thin layer over libtorch's distributed engine, c10d: a process group (Gloo on
// CPUs, NCCL on CUDA builds) joined through a TCPStore rendezvous, and the collectives
// that data-parallel training needs. Every function sets gotch's last-error slot on
// failure (read with get_and_reset_last_err), never throws, and never waits longer than
// the group's timeout.
#ifndef XSPAN_DIST_H
#define XSPAN_DIST_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Backends.
#define XSPAN_DIST_GLOO 0
#define XSPAN_DIST_NCCL 1

// 1 when the library was built with the backend (Gloo needs gloo's headers at build time,
// NCCL a CUDA libtorch and nccl.h).
int xspan_dist_available(int backend);

// xspan_dist_new joins a group of world processes as rank: rank 0 serves a TCPStore on
// addr:port, the others connect to it; all of them then build the backend's process group
// through it. timeout_ms bounds the rendezvous and every collective after it. device is
// the CUDA device of an NCCL rank (ignored by Gloo). Returns NULL on failure.
void *xspan_dist_new(int backend, const char *addr, int port, int rank, int world, int64_t timeout_ms, int device);
void xspan_dist_free(void *group);

// xspan_dist_allreduce sums the n tensors in place over the group (dividing by the world
// size when average is set). Tensors of one dtype and device are flattened into buckets
// of about bucket_bytes each (0: one bucket); the buckets' reductions are issued at once
// and waited for together.
void xspan_dist_allreduce(void *group, void **tensors, int n, int average, int64_t bucket_bytes);

// xspan_dist_broadcast copies root's n tensors into the other ranks' (same shapes), in
// buckets as above.
void xspan_dist_broadcast(void *group, void **tensors, int n, int root, int64_t bucket_bytes);

// xspan_dist_barrier returns when every rank has reached it (or fails after the timeout).
void xspan_dist_barrier(void *group);

#ifdef __cplusplus
}
#endif
#endif
