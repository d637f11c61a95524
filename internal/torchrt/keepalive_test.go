package torchrt

// These tests prove that the set-up's patch of gotch (a `defer runtime.KeepAlive(arg)` for
// every tensor and scalar argument of its wrappers) is in place and needed.
//
// gotch frees a tensor's or scalar's C++ object in a Go finalizer, and its wrappers read
// the C handle out of the Go object, pass it to libtorch and never touch the Go object
// again. When the argument is a temporary — `a.MustPow(newTensor(), false)`,
// `x.MustRenorm(ts.FloatScalar(2), …)` — nothing references the Go object once its handle
// has been loaded, so a garbage collection that runs while libtorch is still working
// queues its finalizer, which deletes the tensor (and frees its data) or the scalar under
// libtorch's feet. A named variable that the caller uses afterwards would hide the bug:
// the temporary is the point.
//
// Each test runs one long op on a goroutine that holds its thread, with a temporary as its
// argument, while a second goroutine forces collections and reuses the freed memory. They
// check values, never timings: without the patch the result comes out wrong (or libtorch
// fails, or the process crashes); with it, it is exact.

import (
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
	"weak"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// keepAliveAttempts and keepAliveBudget bound each test: an attempt lasts about 100 ms.
const (
	keepAliveAttempts = 4
	keepAliveBudget   = 3 * time.Second
)

// TestKeepAliveTensorArg raises full(n, 2) to the power of a temporary ones(n), so every
// element of the result is exactly 2. libtorch's element-wise kernels borrow their
// operands (no reference of their own), so deleting the temporary's handle mid-op frees
// its data while the kernel still reads it. (A matrix product would not show it: libtorch
// copies its operands' handles before it starts.) The temporary is made on the collecting
// goroutine's OS thread, so its data lies in that thread's malloc arena; once it is gone,
// the goroutine allocates tensors filled with 7 there until one lands on the freed data,
// and the power reads 7s: 2⁷ instead of 2.
func TestKeepAliveTensorArg(t *testing.T) {
	defer Lock()()
	defer SetThreads(Threads())
	SetThreads(1) // one long op on one thread: a window of about 100 ms

	const n = 1 << 22
	size := []int64{n}
	fillSize := []int64{n - 1024} // fits in the freed block, so malloc can reuse it
	base := ts.MustFull(size, ts.FloatScalar(2), gotch.Float, gotch.CPU)
	defer base.MustDrop()

	deadline := time.Now().Add(keepAliveBudget)
	for attempt := 0; attempt < keepAliveAttempts && time.Now().Before(deadline); attempt++ {
		temps := make(chan *ts.Tensor)
		done := make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			defer Lock()()
			seven := ts.FloatScalar(7)
			defer runtime.KeepAlive(seven)
			var fills []*ts.Tensor
			defer func() {
				for _, f := range fills {
					f.MustDrop()
				}
			}()

			data, gone := func() (unsafe.Pointer, weak.Pointer[ts.Tensor]) {
				tmp := ts.MustOnes(size, gotch.Float, gotch.CPU)
				data, err := tmp.DataPtr()
				if err != nil {
					panic(err)
				}
				gone := weak.Make(tmp)
				temps <- tmp
				return data, gone
			}()
			reused := false
			for {
				select {
				case <-done:
					return
				default:
				}
				runtime.GC()
				time.Sleep(200 * time.Microsecond) // let the finalizer goroutine run
				if gone.Value() != nil || reused || len(fills) == 8 {
					continue
				}
				f := ts.MustFull(fillSize, seven, gotch.Float, gotch.CPU)
				fills = append(fills, f)
				p, err := f.DataPtr()
				reused = err == nil && p == data
			}
		}()

		pow := base.MustPow(<-temps, false) // the temporary: only the argument holds it
		close(done)
		<-stopped

		lo := pow.MustMin(false)
		hi := pow.MustMax(false)
		gotMin, gotMax := lo.Float64Values()[0], hi.Float64Values()[0]
		lo.MustDrop()
		hi.MustDrop()
		pow.MustDrop()
		if gotMin != 2 || gotMax != 2 {
			t.Fatalf("attempt %d: 2 to the power of ones(%d) has elements in [%v, %v], want all 2: "+
				"the temporary argument was freed while libtorch read it", attempt, n, gotMin, gotMax)
		}
	}
}

// TestKeepAliveScalarArg renorms ones(r×c) with temporary scalars. libtorch's renorm reads
// maxnorm once to check it, then again after computing the norms (a long reduction with a
// fractional p), so a scalar freed in between is read after free: glibc overwrites the
// freed scalar's tag with its free-list pointer, and libtorch either rejects it or reads
// a wrong value.
func TestKeepAliveScalarArg(t *testing.T) {
	defer Lock()()
	defer SetThreads(Threads())
	SetThreads(1)

	const (
		r, c    = 4, 1 << 20
		p       = 2.5
		maxnorm = 2.0
	)
	x := ts.MustOnes([]int64{r, c}, gotch.Float, gotch.CPU)
	defer x.MustDrop()
	want := maxnorm / math.Pow(c, 1/p) // every row's norm is c^(1/p) > maxnorm

	deadline := time.Now().Add(keepAliveBudget)
	for attempt := 0; attempt < keepAliveAttempts && time.Now().Before(deadline); attempt++ {
		done := make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for {
				select {
				case <-done:
					return
				default:
				}
				runtime.GC()
				time.Sleep(100 * time.Microsecond) // let the finalizer goroutine run
			}
		}()

		y, err := x.Renorm(ts.FloatScalar(p), 0, ts.FloatScalar(maxnorm), false)
		close(done)
		<-stopped
		if err != nil {
			msg, _, _ := strings.Cut(err.Error(), "\n") // libtorch appends its stack
			t.Fatalf("attempt %d: renorm with temporary scalars failed: %s: "+
				"a scalar argument was freed while libtorch read it", attempt, msg)
		}
		lo := y.MustMin(false)
		hi := y.MustMax(false)
		gotMin, gotMax := lo.Float64Values()[0], hi.Float64Values()[0]
		lo.MustDrop()
		hi.MustDrop()
		y.MustDrop()
		if math.Abs(gotMin-want) > 1e-3*want || math.Abs(gotMax-want) > 1e-3*want {
			t.Fatalf("attempt %d: renorm(ones, p=%v, maxnorm=%v) has elements in [%v, %v], want %v: "+
				"a scalar argument was freed while libtorch read it", attempt, p, maxnorm, gotMin, gotMax, want)
		}
	}
}
