#include "engine/model/attention.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include "engine/model/rms_norm.h"
#include "engine/model/rotary.h"

namespace tlm {

at::Tensor written_out_attention_bias(const at::Tensor& mask, int64_t T, int64_t S, const at::TensorOptions& options) {
  const at::Tensor allowed =
      mask.defined() ? mask : at::ones({T, S}, options.dtype(at::kBool)).tril(S - T).view({1, 1, T, S});
  return at::zeros(allowed.sizes(), options)
      .masked_fill_(~allowed, -std::numeric_limits<double>::infinity())
      .unsqueeze(2);  // [B or 1, 1, 1, T, S], broadcast over the query heads of a KV head
}

at::Tensor written_out_attention_with_bias(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           const at::Tensor& bias, double scale) {
  const int64_t B = q.size(0), Hq = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1), S = k.size(2);
  const int64_t g = Hq / Hkv;
  const at::Tensor qg = q.reshape({B, Hkv, g * T, D});
  const at::Tensor scores = at::matmul(qg, k.transpose(2, 3)).mul_(scale).view({B, Hkv, g, T, S}) + bias;
  // The softmax in fp32 whatever q's dtype, as transformers' eager attention (a no-op in fp32).
  const at::Tensor p = at::softmax(scores, -1, at::kFloat).to(q.scalar_type()).view({B, Hkv, g * T, S});
  return at::matmul(p, v).view({B, Hq, T, D});
}

at::Tensor written_out_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                 double scale) {
  return written_out_attention_with_bias(
      q, k, v, written_out_attention_bias(mask, q.size(2), k.size(2), q.options().requires_grad(false)), scale);
}

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
  const int64_t S = k.size(2);
  if ((T == 1 && in.mask.defined()) || (T * S <= kWrittenOutAttentionScores && (in.mask.defined() || S == T))) {
    // The mask as scores to add (0 / -inf), made by the first layer and kept for the rest.
    if (!in.written_out_bias.defined())
      in.written_out_bias = written_out_attention_bias(in.mask, T, S, q.options().requires_grad(false));
    out = written_out_attention_with_bias(q, k, v, in.written_out_bias, scale);
  } else if (in.mask.defined()) {
    out = at::scaled_dot_product_attention(q, k, v, in.mask, 0.0, false, scale, /*enable_gqa=*/true);
  } else {
    out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale, true);
  }
  out = out.transpose(1, 2).reshape({B, T, -1});  // [B, T, heads/tp * D]
  return o_->forward(out);
}

}  // namespace tlm
