// A fused Expire-Span attention: one autograd function whose forward computes, over
// blocks of queries, the spans' soft mask, the position term, the scores, the softmax with
// the mask, dropout, the output and the span loss, and saves only its inputs (q, k, v,
// spans, ages, the position table), the dropout seed and a per-key count for the span
// loss; its backward recomputes each block's scores and gives the gradients of q, k, v,
// the spans and the position table. Temporary memory is a few blocks of B×K×chunk×N
// floats, never the B×K×T×N tensors that the composed path keeps for autograd.
//
// It computes exactly what expirespan.Attention's composed path (BuildMasks, Attend,
// SpanLoss) computes, with the same operations in the same order where that matters, and
// only stable ATen calls, so that it runs on the CPU and on CUDA alike, against libtorch
// 1.13 and 2.x. It computes in float32 whatever the inputs' type, with autocast off inside
// (the caller casts inputs with a graph, so gradients come back in their types).
#include "torch_api.h"
#include "xspan_attention.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <mutex>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// Floats per score-sized temporary when the caller leaves the chunk to us (8 MiB; a block
// of work holds about four): on the CPU, tiny (16 streams, 4 heads, ~400 keys) gets blocks
// of 80 queries, small (~800 keys) of 32; below that, per-block overheads start to show.
constexpr int64_t kChunkBudget = int64_t(1) << 21;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// keep_mask is the dropout keep-mask (1 with probability 1 − p, else 0) of the queries
// [j0, j0+tc) of a B×K×T×N weight tensor: the concatenation of the masks of the dropout
// groups it covers (j0 a multiple of the group), each drawn from a private generator
// seeded from (seed, group). The device's default generator is cloned for its type only.
at::Tensor keep_mask(int64_t seed, int64_t j0, int64_t tc, int64_t t, at::IntArrayRef bkn, double p,
                     const at::TensorOptions &opt) {
  TORCH_CHECK(j0 % XSPAN_DROPOUT_GROUP == 0, "xspan dropout: chunk start ", j0, " is not a multiple of the group");
  at::Generator proto = at::globalContext().defaultGenerator(opt.device());
  std::vector<at::Tensor> parts;
  for (int64_t g0 = j0; g0 < j0 + tc; g0 += XSPAN_DROPOUT_GROUP) {
    int64_t rows = std::min<int64_t>(XSPAN_DROPOUT_GROUP, t - g0);
    at::Generator gen;
    {
      std::lock_guard<std::mutex> lock(proto.mutex());
      gen = proto.clone();
    }
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(splitmix64((uint64_t)seed * 0x100000001b3ULL + (uint64_t)(g0 / XSPAN_DROPOUT_GROUP)));
    }
    auto m = at::empty({bkn[0], bkn[1], rows, bkn[2]}, opt.dtype(at::kFloat));
    m.bernoulli_(1 - p, gen);
    parts.push_back(m);
  }
  if (parts.size() == 1)
    return parts[0];
  return at::cat(parts, 2);
}

struct Params {
  int64_t pos_from = 0, window = 0; // window > 0: a query sees keys at distance ≤ window only
  double ramp = 1, cap = 0, span_coef = 0, dropout = 0;
  int64_t seed = 0, chunk = 0;
  bool expire = false; // e holds the spans (else it is an empty placeholder)
};

int64_t pick_chunk(int64_t b, int64_t heads, int64_t t, int64_t n, int64_t want) {
  int64_t c = want;
  if (c <= 0)
    c = kChunkBudget / std::max<int64_t>(1, b * heads * n);
  c = std::max<int64_t>(XSPAN_DROPOUT_GROUP, c / XSPAN_DROPOUT_GROUP * XSPAN_DROPOUT_GROUP);
  return std::min(c, t);
}

// What a block of queries needs besides the scores: the mask terms, broadcast over heads.
struct BlockMask {
  at::Tensor logm;  // B×1×tc×N: log m where m > 0, −1e30 where m = 0
  at::Tensor rowok; // B×1×tc×1: 1 where a query sees at least one key
  at::Tensor u;     // B×tc×N: 1 + r/R (expiry only)
  at::Tensor inramp;// B×tc×N: 0 < m < 1 as float (expiry with a span loss only)
  at::Tensor r;     // B×tc×N: e' − δ (expiry with a span loss only)
  at::Tensor posidx;// B×K×tc×W int64 position columns (W > 0 only)
};

// block_mask follows Attention.BuildMasks operation by operation for queries [j0, j0+tc).
BlockMask block_mask(const at::Tensor &ee, const at::Tensor &ages, int64_t j0, int64_t tc, int64_t heads,
                     int64_t pos_from, int64_t P, int64_t window, double ramp, bool want_loss, bool backward) {
  BlockMask bm;
  auto j = at::arange((double)j0, (double)(j0 + tc), ages.options()).view({1, tc, 1});
  auto delta = ages.unsqueeze(1) + j; // B×tc×N
  auto visible = delta.ge(1);
  if (window > 0)
    visible.logical_and_(delta.le((double)window));
  at::Tensor masked;
  if (ee.defined()) {
    auto r = ee.unsqueeze(1) - delta;
    auto u = r.mul(1.0 / ramp).add(1.0);
    auto m = u.clamp(0, 1).mul_(visible);
    masked = m.le(0);
    bm.logm = at::where(masked, at::scalar_tensor(-1e30, u.options()), u.clamp(1e-30, 1).log_()).unsqueeze(1);
    if (want_loss && !backward) {
      bm.inramp = m.gt(0).logical_and_(m.lt(1)).to(at::kFloat);
      bm.r = r;
    }
    if (backward)
      bm.u = u;
  } else {
    masked = visible.logical_not();
    bm.logm = masked.to(at::kFloat).mul_(-1e30).unsqueeze(1);
  }
  bm.rowok = masked.logical_not().any(-1, true).to(at::kFloat).unsqueeze(1);
  int64_t n = ages.size(1), w = n - pos_from;
  if (w > 0) {
    auto tail = delta.narrow(2, pos_from, w);
    auto ok = tail.ge(1).logical_and_(tail.le((double)P)).to(at::kFloat);
    auto idx = ok.mul_(tail).neg_().add_((double)P).to(at::kLong).unsqueeze(1);
    bm.posidx = idx.expand({idx.size(0), heads, tc, w});
  }
  return bm;
}

// scores returns softmax(s + log m) for a block, s = q·kᵀ plus the position term.
at::Tensor block_weights(const at::Tensor &qc, const at::Tensor &kt, const at::Tensor &posext,
                         const BlockMask &bm, int64_t pos_from) {
  auto s = at::matmul(qc, kt); // B×K×tc×N
  if (bm.posidx.defined()) {
    auto qp = at::matmul(qc, posext); // B×K×tc×(P+1)
    int64_t w = bm.posidx.size(3);
    s.narrow(3, pos_from, w).add_(qp.gather(3, bm.posidx));
  }
  s.add_(bm.logm);
  return at::_softmax(s, -1, false);
}

class ExpireAttention : public torch::autograd::Function<ExpireAttention> {
public:
  static variable_list forward(AutogradContext *ctx, at::Tensor q, at::Tensor k, at::Tensor v, at::Tensor e,
                               at::Tensor ages, at::Tensor pos, const Params &p) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    int64_t B = q.size(0), K = q.size(1), T = q.size(2), N = k.size(2), P = pos.size(1);
    int64_t chunk = pick_chunk(B, K, T, N, p.chunk);
    bool expire = p.expire;
    bool want_loss = expire && p.span_coef != 0;
    at::Tensor ee;
    if (expire)
      ee = p.cap > 0 ? e.clamp_max(p.cap) : e;
    auto kt = k.transpose(-1, -2);
    auto posext = at::cat({pos, at::zeros({pos.size(0), 1}, pos.options())}, 1);
    auto out = at::empty_like(q, at::MemoryFormat::Contiguous);
    auto loss = at::zeros({}, q.options());
    at::Tensor count; // B×N: Σ_j [0 < m_ji < 1], the span loss's derivative in e'
    if (want_loss)
      count = at::zeros({B, N}, q.options());
    for (int64_t j0 = 0; j0 < T; j0 += chunk) {
      int64_t tc = std::min(chunk, T - j0);
      auto bm = block_mask(ee, ages, j0, tc, K, p.pos_from, P, p.window, p.ramp, want_loss, false);
      auto qc = q.narrow(2, j0, tc);
      auto a = block_weights(qc, kt, posext, bm, p.pos_from);
      if (p.dropout > 0)
        a.mul_(keep_mask(p.seed, j0, tc, T, {B, K, N}, p.dropout, q.options())).mul_(1 / (1 - p.dropout));
      out.narrow(2, j0, tc).copy_(at::matmul(a, v).mul_(bm.rowok));
      if (want_loss) {
        loss.add_(bm.r.mul(bm.inramp).sum());
        count.add_(bm.inramp.sum(1));
      }
    }
    loss.mul_(p.span_coef);
    ctx->save_for_backward({q, k, v, e, ages, pos, count});
    ctx->saved_data["pos_from"] = p.pos_from;
    ctx->saved_data["window"] = p.window;
    ctx->saved_data["ramp"] = p.ramp;
    ctx->saved_data["cap"] = p.cap;
    ctx->saved_data["span_coef"] = p.span_coef;
    ctx->saved_data["dropout"] = p.dropout;
    ctx->saved_data["seed"] = p.seed;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["expire"] = expire;
    if (!want_loss)
      ctx->mark_non_differentiable({loss});
    return {out, loss};
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    auto saved = ctx->get_saved_variables();
    auto q = saved[0], k = saved[1], v = saved[2], e = saved[3], ages = saved[4], pos = saved[5], count = saved[6];
    int64_t pos_from = ctx->saved_data["pos_from"].toInt(), window = ctx->saved_data["window"].toInt();
    double ramp = ctx->saved_data["ramp"].toDouble(), cap = ctx->saved_data["cap"].toDouble();
    double span_coef = ctx->saved_data["span_coef"].toDouble(), dropout = ctx->saved_data["dropout"].toDouble();
    int64_t seed = ctx->saved_data["seed"].toInt(), chunk = ctx->saved_data["chunk"].toInt();
    int64_t B = q.size(0), K = q.size(1), T = q.size(2), N = k.size(2), P = pos.size(1);
    bool expire = ctx->saved_data["expire"].toBool();
    auto go = grads[0];
    at::Tensor gq, gk, gv, ge, gpos;
    at::Tensor ee;
    if (expire)
      ee = cap > 0 ? e.clamp_max(cap) : e;
    if (go.defined()) {
      auto kt = k.transpose(-1, -2), vt = v.transpose(-1, -2);
      auto posext = at::cat({pos, at::zeros({pos.size(0), 1}, pos.options())}, 1);
      gq = at::empty_like(q, at::MemoryFormat::Contiguous);
      gk = at::zeros_like(k, at::MemoryFormat::Contiguous);
      gv = at::zeros_like(v, at::MemoryFormat::Contiguous);
      auto gposext = at::zeros_like(posext);
      at::Tensor gu; // B×N: Σ_j ∂L/∂u_ji · ∂u/∂e'… before the 1/R
      if (expire)
        gu = at::zeros({B, N}, q.options());
      for (int64_t j0 = 0; j0 < T; j0 += chunk) {
        int64_t tc = std::min(chunk, T - j0);
        auto bm = block_mask(ee, ages, j0, tc, K, pos_from, P, window, ramp, false, true);
        auto qc = q.narrow(2, j0, tc);
        auto a = block_weights(qc, kt, posext, bm, pos_from);
        auto goc = go.narrow(2, j0, tc).mul(bm.rowok); // B×K×tc×d_h
        auto ga = at::matmul(goc, vt);                  // ∂L/∂(dropped weights)
        if (dropout > 0) {
          auto keep = keep_mask(seed, j0, tc, T, {B, K, N}, dropout, q.options()).mul_(1 / (1 - dropout));
          gv.add_(at::matmul(a.mul(keep).transpose(-1, -2), goc));
          ga.mul_(keep);
        } else {
          gv.add_(at::matmul(a.transpose(-1, -2), goc));
        }
        auto gs = at::_softmax_backward_data(ga, a, -1, at::kFloat); // ∂L/∂(s + log m)
        a = at::Tensor();
        ga = at::Tensor();
        auto gqc = at::matmul(gs, k);
        gk.add_(at::matmul(gs.transpose(-1, -2), qc));
        if (bm.posidx.defined()) {
          int64_t w = bm.posidx.size(3);
          auto gqp = at::zeros({B, K, tc, P + 1}, q.options());
          gqp.scatter_add_(3, bm.posidx, gs.narrow(3, pos_from, w));
          gqc.add_(at::matmul(gqp, posext.t()));
          gposext.add_(at::matmul(qc.reshape({-1, qc.size(3)}).t(), gqp.view({-1, P + 1})));
        }
        gq.narrow(2, j0, tc).copy_(gqc);
        if (expire) {
          // log(clamp(u, 1e-30, 1)) passes its gradient 1/u where 1e-30 ≤ u ≤ 1; where
          // the mask hides a key the weight, hence gs, is exactly 0.
          auto gl = gs.sum(1); // B×tc×N, over heads
          auto pass = bm.u.ge(1e-30).logical_and_(bm.u.le(1));
          gu.add_(at::where(pass, gl.div_(bm.u), at::scalar_tensor(0., gl.options())).sum(1));
        }
      }
      gpos = gposext.narrow(1, 0, P);
      if (expire)
        ge = gu.mul_(1.0 / ramp);
    }
    if (expire && count.defined() && grads[1].defined()) {
      auto gl = count.mul(grads[1] * span_coef);
      ge = ge.defined() ? ge.add_(gl) : gl;
    }
    if (expire && ge.defined() && cap > 0)
      ge.mul_(e.le(cap));
    return {gq, gk, gv, ge, at::Tensor(), gpos, at::Tensor()};
  }
};

} // namespace

int64_t xspan_draw_seed(void) {
  PROTECT(auto gen = at::globalContext().defaultGenerator(at::kCPU);
          std::lock_guard<std::mutex> lock(gen.mutex());
          return (int64_t)(gen.get<at::CPUGeneratorImpl>()->random64() >> 1);)
  return 0;
}

void xspan_group_dropout(tensor *out, tensor att, double p, int64_t seed) {
  PROTECT(auto &a = *att; TORCH_CHECK(a.dim() == 4, "xspan_group_dropout: weights of ", a.dim(), " dimensions");
          auto keep = keep_mask(seed, 0, a.size(2), a.size(2), {a.size(0), a.size(1), a.size(3)}, p,
                                a.options().dtype(at::kFloat));
          out[0] = new torch::Tensor(a * keep.mul_(1 / (1 - p)).to(a.scalar_type()));)
}

void xspan_expire_attention(tensor *out, tensor q, tensor k, tensor v, tensor e, tensor ages, tensor pos,
                            int64_t pos_from, int64_t window, double ramp, double cap, double span_coef,
                            double dropout, int64_t seed, int64_t chunk) {
  PROTECT(
      auto f32 = [](const at::Tensor &t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); };
      TORCH_CHECK(q->dim() == 4 && k->dim() == 4 && v->dim() == 4, "xspan_expire_attention: q, k, v must be B×K×·×d_h");
      TORCH_CHECK(ramp > 0, "xspan_expire_attention: ramp ", ramp);
      Params p; p.pos_from = pos_from; p.window = window; p.ramp = ramp; p.cap = cap; p.span_coef = span_coef; p.dropout = dropout;
      p.seed = seed; p.chunk = chunk;
      // libtorch 1.13's custom functions cannot take an undefined tensor: without spans,
      // an empty one stands in.
      p.expire = e != nullptr;
      at::Tensor et = p.expire ? f32(*e) : at::empty({0}, q->options().dtype(at::kFloat));
      auto res = ExpireAttention::apply(f32(*q), f32(*k), f32(*v), et, f32(*ages).detach(), f32(*pos), p);
      out[0] = new torch::Tensor(res[0]); out[1] = new torch::Tensor(res[1]);)
}

int64_t xspan_attention_chunk(int64_t b, int64_t heads, int64_t t, int64_t n) {
  PROTECT(return pick_chunk(b, heads, t, n, 0);)
  return 0;
}
