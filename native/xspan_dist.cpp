// xspan's layer over c10d, libtorch's distributed engine (see xspan_dist.h). It must
// compile against libtorch 1.13 (Debian's: process groups derive from ProcessGroup) and
// 2.x (they derive from Backend); Gloo needs gloo's headers (Debian's libgloo-dev), NCCL a
// CUDA libtorch and nccl.h. The set-up defines XSPAN_GLOO and XSPAN_NCCL when it found
// those headers, so that installing them later rebuilds this unit.
#include "torch_api.h"
#include "xspan_dist.h"

#ifndef XSPAN_NO_C10D

#include <torch/version.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
using xspan_backend_t = c10d::Backend;
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
using xspan_backend_t = c10d::ProcessGroup;
#endif

#if defined(XSPAN_GLOO) && __has_include(<gloo/context.h>) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define XSPAN_HAVE_GLOO 1
#endif

#if defined(XSPAN_CUDA) && defined(XSPAN_NCCL) && __has_include(<nccl.h>) && __has_include(<cuda_runtime_api.h>) && \
    __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define XSPAN_HAVE_NCCL 1
#endif

namespace {

struct group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<xspan_backend_t> pg;
  int rank = 0, world = 1, backend = 0;
  std::chrono::milliseconds timeout{0};
};

group *as_group(void *p) {
  if (p == nullptr)
    throw std::invalid_argument("xspan dist: no process group (closed, or never joined)");
  return static_cast<group *>(p);
}

std::vector<at::Tensor> tensors_of(void **ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) {
    auto t = static_cast<torch::Tensor *>(ts[i]);
    if (t == nullptr || !t->defined())
      throw std::invalid_argument("xspan dist: tensor " + std::to_string(i) + " is undefined");
    out.push_back(*t);
  }
  return out;
}

// A bucket: consecutive tensors of one dtype and device, flattened into one.
struct bucket {
  std::vector<size_t> members;
  at::Tensor flat;
};

std::vector<bucket> buckets_of(const std::vector<at::Tensor> &ts, int64_t bucket_bytes) {
  std::vector<bucket> out;
  int64_t bytes = 0;
  for (size_t i = 0; i < ts.size(); i++) {
    const auto &t = ts[i];
    int64_t nb = t.numel() * (int64_t)t.element_size();
    bool fresh = out.empty() || ts[out.back().members[0]].scalar_type() != t.scalar_type() ||
                 ts[out.back().members[0]].device() != t.device() || (bucket_bytes > 0 && bytes + nb > bucket_bytes && bytes > 0);
    if (fresh) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().members.push_back(i);
    bytes += nb;
  }
  for (auto &b : out) {
    if (b.members.size() == 1 && ts[b.members[0]].is_contiguous()) {
      b.flat = ts[b.members[0]]; // reduced in place
      continue;
    }
    std::vector<at::Tensor> flat;
    for (auto i : b.members)
      flat.push_back(ts[i].reshape({-1}));
    b.flat = at::cat(flat);
  }
  return out;
}

void unflatten(std::vector<at::Tensor> &ts, const bucket &b) {
  if (b.members.size() == 1 && b.flat.is_same(ts[b.members[0]]))
    return;
  int64_t off = 0;
  for (auto i : b.members) {
    auto n = ts[i].numel();
    ts[i].copy_(b.flat.narrow(0, off, n).view(ts[i].sizes()));
    off += n;
  }
}

void wait_all(group *g, std::vector<c10::intrusive_ptr<c10d::Work>> &works, const char *what) {
  for (auto &w : works) {
    if (!w->wait(g->timeout))
      throw std::runtime_error(std::string("xspan dist: ") + what + " did not complete");
  }
}

} // namespace

int xspan_dist_available(int backend) {
  switch (backend) {
  case XSPAN_DIST_GLOO:
#ifdef XSPAN_HAVE_GLOO
    return 1;
#else
    return 0;
#endif
  case XSPAN_DIST_NCCL:
#ifdef XSPAN_HAVE_NCCL
    return 1;
#else
    return 0;
#endif
  }
  return 0;
}

void *xspan_dist_new(int backend, const char *addr, int port, int rank, int world, int64_t timeout_ms, int device) {
  PROTECT(
      if (world < 1 || rank < 0 || rank >= world) throw std::invalid_argument(
          "xspan dist: rank " + std::to_string(rank) + " outside a world of " + std::to_string(world));
      if (port <= 0 || port > 65535) throw std::invalid_argument("xspan dist: port " + std::to_string(port) + " out of range");
      auto g = std::make_unique<group>(); g->rank = rank; g->world = world; g->backend = backend;
      g->timeout = std::chrono::milliseconds(timeout_ms);
      std::string host(addr ? addr : "127.0.0.1");
      c10d::TCPStoreOptions so; so.port = (uint16_t)port; so.isServer = rank == 0; so.numWorkers = (size_t)world;
      so.waitWorkers = true; so.timeout = g->timeout;
      g->store = c10::make_intrusive<c10d::TCPStore>(host, so);
      switch (backend) {
        case XSPAN_DIST_GLOO: {
#ifdef XSPAN_HAVE_GLOO
          auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
          // On loopback, the transport binds to the master's address; elsewhere to the
          // address of this host's name (GLOO_SOCKET_IFNAME names an interface), as PyTorch does.
          const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
          if (ifname != nullptr && *ifname != 0)
            opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
          else if (host == "127.0.0.1" || host == "localhost" || host == "::1")
            opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
          else
            opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
          opts->threads = 2;
          g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, opts);
          break;
#else
          throw std::runtime_error("xspan dist: this native library was built without Gloo (gloo's headers were missing: on Debian, apt-get install libgloo-dev, then rebuild)");
#endif
        }
        case XSPAN_DIST_NCCL: {
#ifdef XSPAN_HAVE_NCCL
          c10::cuda::set_device((c10::DeviceIndex)device);
          auto opts = c10d::ProcessGroupNCCL::Options::create();
          opts->timeout = g->timeout;
          g->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, rank, world, opts);
          break;
#else
          throw std::runtime_error("xspan dist: this native library was built without NCCL (it needs a CUDA libtorch and nccl.h at build time)");
#endif
        }
        default:
          throw std::invalid_argument("xspan dist: unknown backend " + std::to_string(backend));
      }
      return g.release();)
  return nullptr;
}

void xspan_dist_free(void *p) {
  PROTECT(delete static_cast<group *>(p);)
}

void xspan_dist_allreduce(void *p, void **ts, int n, int average, int64_t bucket_bytes) {
  PROTECT(
      // Results are written in place, into parameters too (leaves that require grad).
      at::NoGradGuard no_grad; auto g = as_group(p); auto tensors = tensors_of(ts, n); auto bs = buckets_of(tensors, bucket_bytes);
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (auto &b : bs) {
        std::vector<at::Tensor> one{b.flat};
        c10d::AllreduceOptions o;
        o.reduceOp = c10d::ReduceOp::SUM;
        o.timeout = g->timeout;
        works.push_back(g->pg->allreduce(one, o));
      } wait_all(g, works, "all-reduce");
      for (auto &b : bs) {
        if (average && g->world > 1)
          b.flat.div_(g->world);
        unflatten(tensors, b);
      })
}

void xspan_dist_broadcast(void *p, void **ts, int n, int root, int64_t bucket_bytes) {
  PROTECT(
      at::NoGradGuard no_grad; auto g = as_group(p); if (root < 0 || root >= g->world) throw std::invalid_argument("xspan dist: broadcast root " + std::to_string(root) + " outside the world");
      auto tensors = tensors_of(ts, n); auto bs = buckets_of(tensors, bucket_bytes);
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (auto &b : bs) {
        std::vector<at::Tensor> one{b.flat};
        c10d::BroadcastOptions o;
        o.rootRank = root;
        o.timeout = g->timeout;
        works.push_back(g->pg->broadcast(one, o));
      } wait_all(g, works, "broadcast");
      if (g->rank != root) for (auto &b : bs) unflatten(tensors, b);)
}

void xspan_dist_barrier(void *p) {
  PROTECT(
      auto g = as_group(p);
      // A one-element all-reduce: the same on every backend (NCCL's barrier guesses a device).
      auto dev = g->backend == XSPAN_DIST_NCCL ? at::Device(at::kCUDA) : at::Device(at::kCPU);
      std::vector<at::Tensor> one{at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(dev))};
      c10d::AllreduceOptions o; o.timeout = g->timeout;
      std::vector<c10::intrusive_ptr<c10d::Work>> works{g->pg->allreduce(one, o)};
      wait_all(g, works, "barrier");)
}

#else
// The set-up's fallback for a libtorch whose c10d headers this file cannot compile.
static const char *xspan_no_c10d = "xspan dist: this native library was built without c10d (its headers did not compile against this libtorch; see STUBBED-OPS.txt)";
int xspan_dist_available(int) { return 0; }
void *xspan_dist_new(int, const char *, int, int, int, int64_t, int) {
  PROTECT(throw std::runtime_error(xspan_no_c10d);)
  return nullptr;
}
void xspan_dist_free(void *) {}
void xspan_dist_allreduce(void *, void **, int, int, int64_t) { PROTECT(throw std::runtime_error(xspan_no_c10d);) }
void xspan_dist_broadcast(void *, void **, int, int, int64_t) { PROTECT(throw std::runtime_error(xspan_no_c10d);) }
void xspan_dist_barrier(void *) { PROTECT(throw std::runtime_error(xspan_no_c10d);) }
#endif
