// Package native is xspan's own bindings to the native library (libxspantorch, which the
// set-up builds from gotch's C++ and xspan's native/ folder): what gotch's Go API lacks
// (seeding, threads, CUDA devices and memory, TF32, autocast), the process groups of
// distributed training, and the fused Expire-Span attention. Only torchrt, dist and
// expirespan import it; everything else goes through them.
//
// The #cgo lines (where the headers and the library are) are written by the set-up into
// cgo_flags.go beside this file, ignored by git, as they hold this machine's paths: run
// make setup (or make build) before building. Calls that fail leave their error in gotch's
// thread-local last-error slot, so every caller holds its OS thread (torchrt.Lock).
package native

//#include <stdbool.h>
//#include <stdint.h>
//#include <stdlib.h>
//#include "torch_api.h"
//#include "xspan_native.h"
import "C"

import (
	"errors"
	"runtime"
	"strings"
	"unsafe"

	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// ManualSeed seeds libtorch's default generators (CPU and CUDA).
func ManualSeed(seed int64) { C.at_manual_seed(C.int64_t(seed)) }

// SetNumThreads sets the number of intra-op threads of the process.
func SetNumThreads(n int) { C.at_set_num_threads(C.int(n)) }

// NumThreads returns the number of intra-op threads.
func NumThreads() int { return int(C.at_get_num_threads()) }

// TorchVersion is the libtorch version the native library was compiled against.
func TorchVersion() string { return C.GoString(C.xspan_native_torch_version()) }

// Path is the file the native library was loaded from.
func Path() string { return C.GoString(C.xspan_native_path()) }

// CUDAStatsBuilt reports whether the library was built with CUDA memory statistics.
func CUDAStatsBuilt() bool { return C.xspan_native_cuda_built() != 0 }

// CUDARuntimeVersion is the CUDA runtime's version (e.g. 13000), or -1.
func CUDARuntimeVersion() int { return int(C.xspan_cuda_runtime_version()) }

// CUDADeviceCount is the number of CUDA devices libtorch sees.
func CUDADeviceCount() int { return int(C.xspan_cuda_device_count()) }

// CUDADeviceName is a device's name from the driver, or "".
func CUDADeviceName(device int) string {
	const size = 256
	buf := (*C.char)(C.malloc(size))
	defer C.free(unsafe.Pointer(buf))
	if C.xspan_cuda_device_name(C.int(device), buf, size) != 0 {
		return ""
	}
	return C.GoString(buf)
}

// CUDAMemoryAllocated is the caching allocator's current allocation in bytes, or -1.
func CUDAMemoryAllocated(device int) int64 {
	return int64(C.xspan_cuda_memory_allocated(C.int(device)))
}

// CUDAMaxMemoryAllocated is the caching allocator's peak allocation in bytes, or -1.
func CUDAMaxMemoryAllocated(device int) int64 {
	return int64(C.xspan_cuda_max_memory_allocated(C.int(device)))
}

// CUDAResetPeakMemory starts a new peak.
func CUDAResetPeakMemory(device int) { C.xspan_cuda_reset_peak_memory(C.int(device)) }

// SetTF32 allows or forbids TF32 in float32 matrix products and convolutions.
func SetTF32(on bool) { C.xspan_set_tf32(cbool(on)) }

// TF32 reports whether TF32 is allowed in float32 matrix products.
func TF32() bool { return C.xspan_tf32() != 0 }

// AutocastEnter turns autocast to dtype (an at::ScalarType number) on for the device
// (0 CPU, 1 CUDA) on this thread and returns the previous state for AutocastExit.
func AutocastEnter(device, dtype int) int {
	return int(C.xspan_autocast_enter(C.int(device), C.int(dtype)))
}

// AutocastExit restores the state that AutocastEnter returned.
func AutocastExit(device, previous int) { C.xspan_autocast_exit(C.int(device), C.int(previous)) }

// AutocastEnabled reports whether autocast is on for the device on this thread.
func AutocastEnabled(device int) bool { return C.xspan_autocast_enabled(C.int(device)) != 0 }

// LastError takes the error that the last failed call on this thread left in gotch's
// last-error slot (and clears it), first line only: c10's messages go on with a
// backtrace. nil when there is none.
func LastError() error {
	err := ts.TorchErr()
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "Libtorch API Error: ")
	msg, _, _ = strings.Cut(msg, "\n")
	return errors.New(strings.TrimSpace(msg))
}

// mustOK raises the last error as gotch's Must wrappers do: a panic with
// *libtch.PanicError, which torchrt.Recover turns into the step's or request's error.
func mustOK() {
	if err := ts.TorchErr(); err != nil {
		panic(&lib.PanicError{Err: err})
	}
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// handle is t's C handle; the caller keeps t alive across the call (runtime.KeepAlive).
func handle(t *ts.Tensor) C.tensor {
	if t == nil {
		return nil
	}
	return C.tensor(t.Ctensor())
}

// wrap makes a Go tensor of a handle that a call returned.
func wrap(c C.tensor) *ts.Tensor { return ts.New(lib.Ctensor(unsafe.Pointer(c))) }

// keepAlive keeps tensors alive until this point (their finalizers free the handles).
func keepAlive(tensors ...*ts.Tensor) {
	for _, t := range tensors {
		runtime.KeepAlive(t)
	}
}
