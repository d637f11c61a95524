// Package torchrt is the one door to libtorch that every torch user in xspan goes
// through: it pins goroutines to OS threads, sets the number of intra-op threads, seeds
// libtorch and Go's generators from one seed, and picks the device.
//
// libtorch's grad mode and gotch's last-error slot live in thread-local storage, while Go
// moves goroutines between OS threads at will. A goroutine that calls torch without
// holding its thread can read another call's error, or run with another goroutine's grad
// mode, so every such goroutine starts with
//
//	defer torchrt.Lock()()
package torchrt

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"

	"xspan/internal/native"
)

// Lock pins the calling goroutine to its current OS thread and returns the function that
// releases it. Calls nest: each Lock needs its own release.
func Lock() (unlock func()) {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

// Go runs fn on a new goroutine that holds its OS thread for fn's whole run.
func Go(fn func()) {
	go func() {
		defer Lock()()
		fn()
	}()
}

// SetThreads sets libtorch's number of intra-op threads; n ≤ 0 means one per core
// available to this process. It returns the number set.
func SetThreads(n int) int {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	native.SetNumThreads(n)
	return native.NumThreads()
}

// Threads returns libtorch's number of intra-op threads.
func Threads() int { return native.NumThreads() }

// Seed seeds libtorch's generators (CPU and CUDA) and returns a Go generator seeded from
// the same seed, so that one number fixes every random choice of a run.
func Seed(seed int64) *rand.Rand {
	native.ManualSeed(seed)
	return rand.New(NewSource(seed))
}

// NewSource returns the Go random source that Seed uses: PCG, whose state can be saved
// with MarshalBinary and restored with UnmarshalBinary (for exact resume).
func NewSource(seed int64) *rand.PCG {
	return rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)
}

// LibtorchVersion describes the libtorch that the native library was built against, as
// loaded in this process (the binary may have been built on another machine).
func LibtorchVersion() string {
	kind := "CPU"
	if v := CUDARuntimeVersion(); v != "" {
		kind = "CUDA " + v
	}
	return fmt.Sprintf("libtorch %s (%s)", NativeTorchVersion(), kind)
}

// CUDAAvailable reports whether libtorch sees a usable CUDA device.
func CUDAAvailable() bool { return lib.AtcCudaIsAvailable() }

// CUDADeviceCount returns the number of CUDA devices that libtorch sees.
func CUDADeviceCount() int { return int(lib.AtcCudaDeviceCount()) }

// autoDevice is --device auto's choice and its note: CUDA when usable; the CPU without
// a word where libtorch is a CPU build (there was nothing else to choose); the CPU with
// the reason where a CUDA libtorch sees no usable device.
func autoDevice(cudaUsable bool, cudaRuntime string) (gotch.Device, string) {
	switch {
	case cudaUsable:
		return gotch.CudaBuilder(0), "device: cuda:0 (auto: CUDA is usable)"
	case cudaRuntime == "":
		return gotch.CPU, "device: cpu"
	}
	return gotch.CPU, "device: cpu (auto: libtorch has CUDA " + cudaRuntime + " but sees no usable device)"
}

// ParseDevice turns a --device value (auto, cpu, cuda, cuda:N) into a device. "auto"
// picks CUDA when it is usable, else the CPU, and the returned note says which it chose
// and why. Asking for CUDA where none is usable is an error: never a silent fall-back.
func ParseDevice(name string) (dev gotch.Device, note string, err error) {
	name = strings.ToLower(strings.TrimSpace(name))
	switch {
	case name == "cpu":
		return gotch.CPU, "device: cpu", nil
	case name == "" || name == "auto":
		dev, note := autoDevice(CUDAAvailable(), CUDARuntimeVersion())
		return dev, note, nil
	case name == "cuda" || strings.HasPrefix(name, "cuda:"):
		idx := 0
		if rest, ok := strings.CutPrefix(name, "cuda:"); ok {
			idx, err = strconv.Atoi(rest)
			if err != nil || idx < 0 {
				return gotch.CPU, "", fmt.Errorf("device %q: want cuda:N with N a device number", name)
			}
		}
		if !CUDAAvailable() {
			return gotch.CPU, "", fmt.Errorf("device %q: no usable CUDA device: xspan is built against %s; build against a CUDA libtorch with LIBTORCH=<folder> (see README) or use --device cpu", name, LibtorchVersion())
		}
		if n := CUDADeviceCount(); idx >= n {
			return gotch.CPU, "", fmt.Errorf("device %q: only %d CUDA device(s) visible", name, n)
		}
		return gotch.CudaBuilder(uint(idx)), fmt.Sprintf("device: cuda:%d", idx), nil
	default:
		return gotch.CPU, "", fmt.Errorf("device %q: want auto, cpu, cuda or cuda:N", name)
	}
}

// SeedTorch seeds libtorch's generators alone (no Go generator).
func SeedTorch(seed int64) { native.ManualSeed(seed) }
