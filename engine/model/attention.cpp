#include "engine/model/attention.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include "engine/model/rms_norm.h"
#include "engine/model/rotary.h"

namespace tlm {
namespace {

// One query per row (a decode step) against the cache: q [B, Hq, 1, D], k and v [B, Hkv, S, D]
// (views into the cache), mask [B or 1, 1, 1, S]. The query heads of a KV head form one
// [g, D] x [D, S] product, then softmax and [g, S] x [S, D]: what scaled_dot_product_attention
// computes, without its flash kernel's blocking, which costs more than the arithmetic at one
// query row (decoding at batch 8 on 2 cores spent 3.4 ms a step in that kernel; the step is
// about 2.5 ms shorter this way).
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            double scale) {
  const int64_t B = q.size(0), Hq = q.size(1), D = q.size(3), Hkv = k.size(1);
  const at::Tensor qg = q.reshape({B, Hkv, Hq / Hkv, D});
  const at::Tensor scores = at::where(mask, at::matmul(qg, k.transpose(2, 3)).mul_(scale),
                                     -std::numeric_limits<double>::infinity());  // [B, Hkv, g, S]
  return at::matmul(at::softmax(scores, -1), v).view({B, Hq, 1, D});
}

}  // namespace

Attention::Attention(std::unique_ptr<ColumnParallelLinear> q,
                     std::unique_ptr<ColumnParallelLinear> k,
                     std::unique_ptr<ColumnParallelLinear> v, std::unique_ptr<RowParallelLinear> o,
                     int64_t head_dim)
    : q_(std::move(q)), k_(std::move(k)), v_(std::move(v)), o_(std::move(o)), head_dim_(head_dim),
      scale_(1.0 / std::sqrt(static_cast<double>(head_dim))) {}

at::Tensor Attention::forward(const at::Tensor& x, const AttentionInputs& in) const {
  const int64_t B = x.size(0), T = x.size(1), D = head_dim_;
  // [B, T, heads/tp * D] -> [B, heads/tp, T, D]
  std::vector<at::Tensor> qkv = qkv_ ? qkv_->forward(x) : std::vector<at::Tensor>{q_->forward(x), k_->forward(x), v_->forward(x)};
  at::Tensor q = qkv[0].reshape({B, T, -1, D});
  at::Tensor k = qkv[1].reshape({B, T, -1, D});
  if (q_norm_.defined()) {
    q = rms_norm(q, q_norm_, norm_eps_);
    k = rms_norm(k, k_norm_, norm_eps_);
  }
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  at::Tensor v = qkv[2].reshape({B, T, -1, D}).transpose(1, 2);
  q = apply_rotary(q, in.cos, in.sin);
  k = apply_rotary(k, in.cos, in.sin);
  if (in.cache) {
    KvCache& c = *in.cache;
    c.keys[in.layer].narrow(2, c.length, T).copy_(k);
    c.values[in.layer].narrow(2, c.length, T).copy_(v);
    k = c.keys[in.layer].narrow(2, 0, c.length + T);  // [B, kv/tp, S, D]
    v = c.values[in.layer].narrow(2, 0, c.length + T);
  }
  const double scale = scale_;
  at::Tensor out;
  if (in.cache && T == 1 && in.mask.defined()) {
    out = decode_attention(q, k, v, in.mask, scale);
  } else if (in.mask.defined()) {
    out = at::scaled_dot_product_attention(q, k, v, in.mask, 0.0, false, scale, /*enable_gqa=*/true);
  } else {
    out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale, true);
  }
  out = out.transpose(1, 2).reshape({B, T, -1});  // [B, T, heads/tp * D]
  return o_->forward(out);
}

}  // namespace tlm
