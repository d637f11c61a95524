package torchrt

import (
	"encoding/binary"
	"fmt"
	"math"

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
// restores the mode it found (on, or off inside another NoGrad): the one no-grad idiom of
// xspan, for a function or a block of one,
//
//	defer torchrt.NoGrad()()
//	func() { defer torchrt.NoGrad()(); ... }()
//
// The thread must be locked (Lock): the grad mode is per thread.
func NoGrad() (restore func()) {
	prev := ts.MustGradSetEnabled(false)
	return func() { ts.MustGradSetEnabled(prev) }
}

// DeviceName writes a device as --device takes it: cpu or cuda:N.
func DeviceName(d gotch.Device) string {
	if d.Value < 0 {
		return "cpu"
	}
	return fmt.Sprintf("cuda:%d", d.Value)
}

// Raw copies a tensor to Go as little-endian bytes, with its shape and its dtype as
// safetensors names it: F32, F64 or I64 (other dtypes are an error).
func Raw(t *ts.Tensor) (dtype string, shape []int64, data []byte, err error) {
	shape, err = t.Size()
	if err != nil {
		return "", nil, nil, err
	}
	switch k := t.DType(); k {
	case gotch.Float:
		vals := Float32s(t)
		data = make([]byte, 0, 4*len(vals))
		for _, v := range vals {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
		return "F32", shape, data, nil
	case gotch.Double:
		vals := Float64s(t)
		data = make([]byte, 0, 8*len(vals))
		for _, v := range vals {
			data = binary.LittleEndian.AppendUint64(data, math.Float64bits(v))
		}
		return "F64", shape, data, nil
	case gotch.Int64:
		vals := Int64s(t)
		data = make([]byte, 0, 8*len(vals))
		for _, v := range vals {
			data = binary.LittleEndian.AppendUint64(data, uint64(v))
		}
		return "I64", shape, data, nil
	default:
		return "", nil, nil, fmt.Errorf("tensor of dtype %v: only float32, float64 and int64 tensors are saved", k)
	}
}

// FromRaw makes a tensor on dev from little-endian bytes of dtype F32, F64 or I64 (as
// Raw writes them) and shape; len(data) must match.
func FromRaw(dtype string, shape []int64, data []byte, dev gotch.Device) (*ts.Tensor, error) {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	var size int64
	switch dtype {
	case "F32":
		size = 4
	case "F64", "I64":
		size = 8
	default:
		return nil, fmt.Errorf("dtype %s: only F32, F64 and I64 tensors are loaded", dtype)
	}
	if n*size != int64(len(data)) {
		return nil, fmt.Errorf("%d bytes for shape %v of %s", len(data), shape, dtype)
	}
	var vals any
	switch dtype {
	case "F32":
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		vals = v
	case "F64":
		v := make([]float64, n)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))
		}
		vals = v
	default:
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(data[8*i:]))
		}
		vals = v
	}
	if shape == nil {
		shape = []int64{}
	}
	return FromSlice(vals, shape, dev)
}
