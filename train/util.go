package train

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// values copies a tensor's values to Go as float64 (from any device), freeing every
// intermediate.
func values(t *ts.Tensor) []float64 {
	d := t.MustTotype(gotch.Double, false)
	if d.MustDevice() != gotch.CPU {
		d = d.MustTo(gotch.CPU, true)
	}
	d = d.MustContiguous(true)
	n := d.Numel()
	out := make([]float64, n)
	if n > 0 {
		d.MustCopyData(out, n)
	}
	d.MustDrop()
	return out
}

// value is the value of a one-element tensor.
func value(t *ts.Tensor) float64 { return values(t)[0] }

// noGrad turns libtorch's grad mode off on this thread and returns the function that
// turns it back on. (gotch's GradSetEnabled misreads the previous mode, a C int read as a
// Go int, so the mode is restored to on, the default, rather than to what it was.)
func noGrad() (restore func()) {
	ts.MustGradSetEnabled(false)
	return func() { ts.MustGradSetEnabled(true) }
}

// deviceName writes a device as --device takes it: cpu or cuda:N.
func deviceName(d gotch.Device) string {
	if d.Value < 0 {
		return "cpu"
	}
	return fmt.Sprintf("cuda:%d", d.Value)
}
