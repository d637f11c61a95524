package native

//#include <stdbool.h>
//#include <stdint.h>
//#include <stdlib.h>
//#include "xspan_dist.h"
import "C"

import (
	"errors"
	"unsafe"

	"github.com/sugarme/gotch/ts"
)

// Process groups of c10d (xspan's native/xspan_dist.h): every call on a group is a
// collective, and a failure (a peer that died or hangs past the timeout) is returned as
// the native library's last error.

// Backends of DistAvailable and NewGroup.
const (
	Gloo = C.XSPAN_DIST_GLOO
	NCCL = C.XSPAN_DIST_NCCL
)

// Group is a joined c10d process group.
type Group struct{ p unsafe.Pointer }

// DistAvailable reports whether the library was built with the backend (Gloo or NCCL).
func DistAvailable(backend int) bool { return C.xspan_dist_available(C.int(backend)) != 0 }

// NewGroup joins a process group: rank 0 serves the TCPStore at addr:port, the others
// connect to it within timeoutMs; device is an NCCL rank's CUDA device.
func NewGroup(backend int, addr string, port, rank, world int, timeoutMs int64, device int) (*Group, error) {
	caddr := C.CString(addr)
	defer C.free(unsafe.Pointer(caddr))
	p := C.xspan_dist_new(C.int(backend), caddr, C.int(port), C.int(rank), C.int(world), C.int64_t(timeoutMs), C.int(device))
	if err := LastError(); err != nil || p == nil {
		if err == nil {
			err = errors.New("no process group")
		}
		return nil, err
	}
	return &Group{p: p}, nil
}

// Free leaves and frees the group; its error (a peer already gone) is returned.
func (g *Group) Free() error {
	C.xspan_dist_free(g.p)
	g.p = nil
	return LastError()
}

// tensorArray copies tensor handles into C memory for a call.
func tensorArray(tensors []*ts.Tensor) (*unsafe.Pointer, func()) {
	arr := C.malloc(C.size_t(len(tensors)) * C.size_t(unsafe.Sizeof(uintptr(0))))
	s := unsafe.Slice((*unsafe.Pointer)(arr), len(tensors))
	for i, t := range tensors {
		s[i] = t.Ctensor()
	}
	return (*unsafe.Pointer)(arr), func() { C.free(arr) }
}

// AllReduce sums (or averages) tensors in place over the group, in buckets of about
// bucketBytes whose reductions run at once.
func (g *Group) AllReduce(tensors []*ts.Tensor, average bool, bucketBytes int64) error {
	if len(tensors) == 0 {
		return nil
	}
	arr, free := tensorArray(tensors)
	defer free()
	C.xspan_dist_allreduce(g.p, arr, C.int(len(tensors)), cbool(average), C.int64_t(bucketBytes))
	keepAlive(tensors...)
	return LastError()
}

// Broadcast copies root's tensors into every rank's, in buckets.
func (g *Group) Broadcast(tensors []*ts.Tensor, root int, bucketBytes int64) error {
	if len(tensors) == 0 {
		return nil
	}
	arr, free := tensorArray(tensors)
	defer free()
	C.xspan_dist_broadcast(g.p, arr, C.int(len(tensors)), C.int(root), C.int64_t(bucketBytes))
	keepAlive(tensors...)
	return LastError()
}

// Barrier waits for every rank.
func (g *Group) Barrier() error {
	C.xspan_dist_barrier(g.p)
	return LastError()
}
