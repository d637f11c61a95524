package torchrt

/*
#include <malloc.h>

// keepHeap makes glibc serve every allocation from its heaps and keep freed memory
// there instead of handing large blocks back to the kernel.
static void keepHeap(void) {
	mallopt(M_MMAP_MAX, 0);
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	mallopt(M_TOP_PAD, 64 << 20);
}
*/
import "C"

import "os"

// libtorch allocates its CPU tensors with malloc. glibc serves large blocks with fresh
// mmaps and unmaps them on free, so every step of a training run faults in and zeroes
// its activations again: a fifth of the CPU time of a "small" training step went to
// page faults. Keeping freed memory in the heap removes that; the price is that the
// resident size stays at its peak, which is the figure that matters anyway.
// XSPAN_MALLOC_KEEP=0 leaves glibc's defaults.
func init() {
	if os.Getenv("XSPAN_MALLOC_KEEP") != "0" {
		C.keepHeap()
	}
}
