package torchrt

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/native"
)

// The native library (gotch's C++ and xspan's, built by the set-up against the machine's
// libtorch) answers what gotch's API does not: where it was loaded from and what it was
// built against, CUDA devices by name, the caching allocator's memory figures, TF32, and
// autocast on the CPU as well as on CUDA.

// NativeLibrary returns the file of the native library this process loaded.
func NativeLibrary() string { return native.Path() }

// NativeTorchVersion returns the libtorch version the native library was compiled against.
func NativeTorchVersion() string { return native.TorchVersion() }

// CUDARuntimeVersion returns the CUDA runtime's version as "13.0", or "" without CUDA.
func CUDARuntimeVersion() string {
	v := native.CUDARuntimeVersion()
	if v <= 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}

// CUDADevice describes one CUDA device.
type CUDADevice struct {
	Index int
	Name  string // from the driver; "" when it cannot say
}

// CUDADevices lists the CUDA devices libtorch sees (none on a CPU build).
func CUDADevices() []CUDADevice {
	if !CUDAAvailable() {
		return nil
	}
	n := native.CUDADeviceCount()
	devs := make([]CUDADevice, n)
	for i := range devs {
		devs[i] = CUDADevice{Index: i, Name: native.CUDADeviceName(i)}
	}
	return devs
}

// CUDAMemory returns the caching allocator's current and peak allocation on a CUDA
// device, in bytes; ok is false where the library cannot tell (a CPU device, or a build
// without the CUDA headers).
func CUDAMemory(dev gotch.Device) (current, peak int64, ok bool) {
	if !dev.IsCuda() {
		return 0, 0, false
	}
	current, peak = native.CUDAMemoryAllocated(dev.Value), native.CUDAMaxMemoryAllocated(dev.Value)
	_ = ts.TorchErr()
	return current, peak, current >= 0 && peak >= 0
}

// ResetCUDAPeak starts a new peak for CUDAMemory.
func ResetCUDAPeak(dev gotch.Device) {
	if dev.IsCuda() {
		native.CUDAResetPeakMemory(dev.Value)
		_ = ts.TorchErr()
	}
}

// SetTF32 allows TF32 (10-bit mantissa) in float32 matrix products and convolutions on
// CUDA: several times faster on recent GPUs, at about 1e-3 relative error per product.
func SetTF32(on bool) error {
	native.SetTF32(on)
	return ts.TorchErr()
}

// TF32 reports whether TF32 is allowed.
func TF32() bool { return native.TF32() }

// Autocast runs the ops that follow in dtype (e.g. gotch.BFloat16) on dev's kind of device
// wherever libtorch's autocast lists allow (matrix products, mostly), the rest in float32,
// until the returned function is called. The thread must be locked (Lock): autocast is
// per thread.
func Autocast(dev gotch.Device, dtype gotch.DType) (end func(), err error) {
	kind := 0
	if dev.IsCuda() {
		kind = 1
	}
	st := dtype.CKind()
	if st < 0 {
		return nil, fmt.Errorf("autocast: no libtorch scalar type for %v", dtype)
	}
	prev := native.AutocastEnter(kind, int(st))
	if err := ts.TorchErr(); err != nil {
		return nil, err
	}
	return func() { native.AutocastExit(kind, prev) }, nil
}

// AutocastEnabled reports whether autocast is on for dev's kind of device on this thread.
func AutocastEnabled(dev gotch.Device) bool {
	kind := 0
	if dev.IsCuda() {
		kind = 1
	}
	return native.AutocastEnabled(kind)
}
