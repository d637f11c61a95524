package main

import (
	"fmt"
	"strings"
)

// gotch gives every tensor a 100 kB Go ballast (so that the garbage collector runs often
// enough to free C memory through finalizers) and registers its name in a global map under
// a lock. That costs about 15 µs per op, more than the op itself for the small tensors of a
// Transformer layer. xspan frees its tensors explicitly (Drop) and keeps the finalizer only
// as a safety net, so the patched copy allocates neither.
const newTensorPatched = `func newTensor(ctensor lib.Ctensor, nameOpt ...string) *Tensor {
	// Patched by xspan's set-up: no ballast and no name registry (see internal/torchsetup).
	x := &Tensor{ctensor: ctensor, calledFrom: "newTensor()"}
	if len(nameOpt) > 0 {
		x.name = nameOpt[0]
	}
	atomic.AddInt64(&TensorCount, 1)
	runtime.SetFinalizer(x, freeCTensor)
	return x
}
`

const freeCTensorPatched = `func freeCTensor(ts *Tensor) error {
	// Patched by xspan's set-up: no name registry to consult.
	if ts == nil || ts.ctensor == nil {
		return nil
	}
	lib.AtFree(ts.ctensor)
	ts.ctensor = nil
	runtime.SetFinalizer(ts, nil)
	return nil
}
`

// replaceFunc replaces the top-level function whose declaration starts with sig.
func replaceFunc(src, sig, with string) (string, error) {
	i := strings.Index(src, sig)
	if i < 0 {
		return "", fmt.Errorf("%q not found", sig)
	}
	j := strings.Index(src[i:], "\n}\n")
	if j < 0 {
		return "", fmt.Errorf("end of %q not found", sig)
	}
	return src[:i] + with + src[i+j+3:], nil
}

// patchTensorLifetime rewrites newTensor and freeCTensor in gotch's ts/tensor.go.
func patchTensorLifetime(src string) (string, error) {
	src, err := replaceFunc(src, "func newTensor(", newTensorPatched)
	if err != nil {
		return "", err
	}
	return replaceFunc(src, "func freeCTensor(", freeCTensorPatched)
}

// In-place wrappers replace the tensor's C handle by the new one that the op returns
// (a second handle to the same storage) without freeing the old handle, which then pins
// the storage for the life of the process. patchInPlaceHandles frees the old handle first.
func patchInPlaceHandles(src string) (string, int) {
	const old = "\n  ts.ctensor = *ptr\n"
	n := strings.Count(src, old)
	return strings.ReplaceAll(src, old, "\n  lib.AtFree(ts.ctensor)\n  ts.ctensor = *ptr\n"), n
}

// gotch's AtGradSetEnabled returns the previous grad mode by reading the 4-byte C int as
// an 8-byte Go int: the upper half is stack garbage, and ts.NoGrad then "restores" a
// wrong mode. The patched version converts the value.
const gradSetEnabledPatched = `func AtGradSetEnabled(b int) int {
	// Patched by xspan's set-up: convert the C int instead of reading 8 bytes of it.
	return int(C.at_grad_set_enabled(C.int(b)))
}
`

// patchGradSetEnabled rewrites AtGradSetEnabled in gotch's libtch/tensor.go.
func patchGradSetEnabled(src string) (string, error) {
	return replaceFunc(src, "func AtGradSetEnabled(", gradSetEnabledPatched)
}

// gotch's NoGrad turns the grad mode back on after fn without a defer, and whatever mode
// it found: a panic in fn (now the way an op fails) would leave the OS thread with grad
// mode off for the next goroutine that locks it. The patched versions restore the mode
// they found, also when fn panics.
const noGradPatched = `func NoGrad(fn func()) {
	// Patched by xspan's set-up: restore the previous mode, also on panic.
	prev := MustGradSetEnabled(false)
	defer MustGradSetEnabled(prev)
	fn()
}
`

const noGrad1Patched = `func NoGrad1(fn func() interface{}) interface{} {
	// Patched by xspan's set-up: restore the previous mode, also on panic.
	prev := MustGradSetEnabled(false)
	defer MustGradSetEnabled(prev)
	return fn()
}
`

// patchNoGrad rewrites NoGrad and NoGrad1 in gotch's ts/tensor.go.
func patchNoGrad(src string) (string, error) {
	src, err := replaceFunc(src, "func NoGrad(", noGradPatched)
	if err != nil {
		return "", err
	}
	return replaceFunc(src, "func NoGrad1(", noGrad1Patched)
}
