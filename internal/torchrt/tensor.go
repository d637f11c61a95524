package torchrt

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Every copy between a tensor and a Go slice goes through this file, so that the device
// move, the contiguous copy and the freeing of each intermediate are written once.

// FromSlice makes a tensor of shape from a Go slice (of int64, float32, …) on dev.
func FromSlice(vals any, shape []int64, dev gotch.Device) (*ts.Tensor, error) {
	t, err := ts.OfSlice(vals)
	if err != nil {
		return nil, err
	}
	t = t.MustView(shape, true)
	if dev != gotch.CPU {
		t = t.MustTo(dev, true)
	}
	return t, nil
}

// MustFromSlice is FromSlice for slices of a type libtorch takes (it panics otherwise).
func MustFromSlice(vals any, shape []int64, dev gotch.Device) *ts.Tensor {
	t, err := FromSlice(vals, shape, dev)
	if err != nil {
		panic(err)
	}
	return t
}

// Float32s copies a tensor's values to Go as float32 (from any device and dtype).
func Float32s(t *ts.Tensor) []float32 {
	c := onCPU(t, gotch.Float)
	defer c.MustDrop()
	out := make([]float32, c.Numel())
	if len(out) > 0 {
		c.MustCopyData(out, c.Numel())
	}
	return out
}

// Float64s copies a tensor's values to Go as float64 (from any device and dtype).
func Float64s(t *ts.Tensor) []float64 {
	c := onCPU(t, gotch.Double)
	defer c.MustDrop()
	out := make([]float64, c.Numel())
	if len(out) > 0 {
		c.MustCopyData(out, c.Numel())
	}
	return out
}

// Int64s copies a tensor's values to Go as int64 (from any device and dtype).
func Int64s(t *ts.Tensor) []int64 {
	c := onCPU(t, gotch.Int64)
	defer c.MustDrop()
	out := make([]int64, c.Numel())
	if len(out) > 0 {
		c.MustCopyData(out, c.Numel())
	}
	return out
}

// Float64 is the value of a one-element tensor.
func Float64(t *ts.Tensor) float64 { return Float64s(t)[0] }

// onCPU returns a new contiguous CPU tensor of kind with t's values; t is kept.
func onCPU(t *ts.Tensor, kind gotch.DType) *ts.Tensor {
	c := t.MustTotype(kind, false)
	if c.MustDevice() != gotch.CPU {
		c = c.MustTo(gotch.CPU, true)
	}
	return c.MustContiguous(true)
}

// NoGrad turns libtorch's grad mode off on this thread and returns the function that
// turns it back on. (gotch's GradSetEnabled misreads the previous mode, a C int read as a
// Go int, so the mode is restored to on, the default, rather than to what it was.)
func NoGrad() (restore func()) {
	ts.MustGradSetEnabled(false)
	return func() { ts.MustGradSetEnabled(true) }
}

// DeviceName writes a device as --device takes it: cpu or cuda:N.
func DeviceName(d gotch.Device) string {
	if d.Value < 0 {
		return "cpu"
	}
	return fmt.Sprintf("cuda:%d", d.Value)
}
