package torchrt

import (
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// BenchmarkSmallOp measures the fixed cost of one gotch call (a 4-element add), which is
// what a layer with many small ops pays per call.
func BenchmarkSmallOp(b *testing.B) {
	defer Lock()()
	x := ts.MustOnes([]int64{4}, gotch.Float, gotch.CPU)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		y := x.MustAdd(x, false)
		y.MustDrop()
	}
}

// BenchmarkSmallOpNoDrop leaves freeing to the garbage collector, as gotch does by default.
func BenchmarkSmallOpNoDrop(b *testing.B) {
	defer Lock()()
	x := ts.MustOnes([]int64{4}, gotch.Float, gotch.CPU)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = x.MustAdd(x, false)
	}
}
