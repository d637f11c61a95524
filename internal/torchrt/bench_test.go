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

// BenchmarkMatmul measures libtorch's float32 matrix product (2048×2048) through gotch, in
// GFLOP/s: the ceiling that model benchmarks are read against.
func BenchmarkMatmul(b *testing.B) {
	defer Lock()()
	SetThreads(0)
	const n = 2048
	x := ts.MustRandn([]int64{n, n}, gotch.Float, gotch.CPU)
	y := ts.MustRandn([]int64{n, n}, gotch.Float, gotch.CPU)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x.MustMatmul(y, false).MustDrop()
	}
	b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkMatmulLayerShape is a projection of a tiny-preset block: (16×128×128)·(128×512).
func BenchmarkMatmulLayerShape(b *testing.B) {
	defer Lock()()
	SetThreads(0)
	x := ts.MustRandn([]int64{16, 128, 128}, gotch.Float, gotch.CPU)
	y := ts.MustRandn([]int64{128, 512}, gotch.Float, gotch.CPU)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x.MustMatmul(y, false).MustDrop()
	}
	b.ReportMetric(2*16*128*128*512*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
