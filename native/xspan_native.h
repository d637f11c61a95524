// xspan's own C API into libtorch, built into the native library beside gotch's
// torch_api (see internal/torchsetup/native.go). Every function sets gotch's last-error
// slot on failure, as gotch's own do; Go reads it with get_and_reset_last_err.
#ifndef XSPAN_NATIVE_H
#define XSPAN_NATIVE_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// What the library was built against and where it was loaded from.
const char *xspan_native_torch_version(void); // TORCH_VERSION at build time
int xspan_native_cuda_built(void);            // 1 when built with CUDA statistics
const char *xspan_native_path(void);          // file the library was loaded from

// CUDA devices, as libtorch and the driver see them.
int xspan_cuda_runtime_version(void); // e.g. 13000; -1 without CUDA
int xspan_cuda_device_count(void);
int xspan_cuda_device_name(int device, char *buf, int len); // 0 when buf holds it
int64_t xspan_cuda_memory_allocated(int device);     // bytes; -1 when unknown
int64_t xspan_cuda_max_memory_allocated(int device); // peak bytes; -1 when unknown
void xspan_cuda_reset_peak_memory(int device);

// TF32 for float32 matrix products and convolutions on CUDA.
void xspan_set_tf32(int on);
int xspan_tf32(void);

// Autocast: ops inside run in dtype (an at::ScalarType number, e.g. bfloat16) where
// libtorch's autocast lists allow. device 0 is the CPU, 1 CUDA. Enter returns the
// previous state, which exit restores.
int xspan_autocast_enter(int device, int dtype);
void xspan_autocast_exit(int device, int previous);
int xspan_autocast_enabled(int device);

#ifdef __cplusplus
}
#endif
#endif
