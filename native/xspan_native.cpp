// xspan's own C++: what gotch's C API lacks for running on CUDA and in mixed precision.
// It must compile against libtorch 1.13 and 2.x: the autocast API moved in 2.4. A
// function that some libtorch cannot compile is stubbed by the set-up like gotch's.
#include "torch_api.h"
#include "xspan_native.h"

#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <dlfcn.h>
#include <torch/version.h>

#include <cstring>
#include <string>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define XSPAN_AUTOCAST_BY_DEVICE 1
#endif

#if defined(XSPAN_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define XSPAN_CUDA_STATS 1
#endif

const char *xspan_native_torch_version(void) { return TORCH_VERSION; }

int xspan_native_cuda_built(void) {
#ifdef XSPAN_CUDA_STATS
  return 1;
#else
  return 0;
#endif
}

const char *xspan_native_path(void) {
  Dl_info info;
  if (dladdr((void *)&xspan_native_path, &info) == 0 || info.dli_fname == nullptr)
    return "";
  return info.dli_fname;
}

int xspan_cuda_runtime_version(void) {
  try {
    if (!at::detail::getCUDAHooks().hasCUDA())
      return -1;
    return (int)at::detail::getCUDAHooks().versionCUDART();
  } catch (const std::exception &) {
    return -1;
  }
}

int xspan_cuda_device_count(void) {
  PROTECT(return (int)torch::cuda::device_count();)
  return 0;
}

// Device names come from the driver API, opened at run time, so that the library needs
// no CUDA headers and loads on machines without a driver.
int xspan_cuda_device_name(int device, char *buf, int len) {
  using init_t = int (*)(unsigned int);
  using get_t = int (*)(int *, int);
  using name_t = int (*)(char *, int, int);
  static void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (cuda == nullptr || len <= 0)
    return -1;
  auto init = (init_t)dlsym(cuda, "cuInit");
  auto get = (get_t)dlsym(cuda, "cuDeviceGet");
  auto name = (name_t)dlsym(cuda, "cuDeviceGetName");
  int dev = 0;
  if (!init || !get || !name || init(0) != 0 || get(&dev, device) != 0 || name(buf, len, dev) != 0)
    return -1;
  buf[len - 1] = 0;
  return 0;
}

int64_t xspan_cuda_memory_allocated(int device) {
#ifdef XSPAN_CUDA_STATS
  PROTECT(auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
          return stats.allocated_bytes[0].current;)
#endif
  return -1;
}

int64_t xspan_cuda_max_memory_allocated(int device) {
#ifdef XSPAN_CUDA_STATS
  PROTECT(auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
          return stats.allocated_bytes[0].peak;)
#endif
  return -1;
}

void xspan_cuda_reset_peak_memory(int device) {
#ifdef XSPAN_CUDA_STATS
  PROTECT(c10::cuda::CUDACachingAllocator::resetPeakStats(device);)
#endif
}

void xspan_set_tf32(int on) {
  PROTECT(at::globalContext().setFloat32MatmulPrecision(on ? "high" : "highest");
          at::globalContext().setAllowTF32CuDNN(on != 0);)
}

int xspan_tf32(void) {
  PROTECT(return at::globalContext().allowTF32CuBLAS() ? 1 : 0;)
  return 0;
}

int xspan_autocast_enabled(int device) {
  PROTECT(
#ifdef XSPAN_AUTOCAST_BY_DEVICE
      return at::autocast::is_autocast_enabled(device ? at::kCUDA : at::kCPU) ? 1 : 0;
#else
      return (device ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled()) ? 1 : 0;
#endif
  )
  return 0;
}

static void set_autocast(int device, bool on, at::ScalarType dtype) {
#ifdef XSPAN_AUTOCAST_BY_DEVICE
  auto dev = device ? at::kCUDA : at::kCPU;
  if (on)
    at::autocast::set_autocast_dtype(dev, dtype);
  at::autocast::set_autocast_enabled(dev, on);
#else
  if (device) {
    if (on)
      at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(on);
  } else {
    if (on)
      at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(on);
  }
#endif
}

int xspan_autocast_enter(int device, int dtype) {
  PROTECT(int prev = xspan_autocast_enabled(device);
          set_autocast(device, true, (at::ScalarType)dtype);
          at::autocast::increment_nesting(); return prev;)
  return 0;
}

void xspan_autocast_exit(int device, int previous) {
  PROTECT(set_autocast(device, previous != 0, at::kFloat);
          // The cache of cast weights lives as long as the outermost region.
          if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();)
}
