// Grouped-query self-attention through at::scaled_dot_product_attention, or written out for short
// sequences (written_out_attention). q/k/v are column-parallel (heads split over TP ranks), o is
// row-parallel; the class never looks at the communicator itself.
#pragma once

#include <memory>

#include <ATen/core/Tensor.h>

#include "dist/tp_linear.h"
#include "engine/model/kv_cache.h"

namespace tlm {

struct AttentionInputs {
  at::Tensor cos, sin;     // [B, T, D]
  at::Tensor mask;         // [B, 1, T, S] bool (true = may attend), undefined = causal
  KvCache* cache = nullptr;
  int layer = 0;
  // The mask as scores to add (0 / -inf) for written_out_attention: made by the first layer
  // of a forward that takes that path, reused by the others.
  mutable at::Tensor written_out_bias;
};

// Grouped-query attention written out: the query heads of a KV head form one [g*T, D] x [D, S]
// product, then the mask, softmax and [g*T, S] x [S, D], which is what
// at::scaled_dot_product_attention computes, in another summation order. q [B, Hq, T, D], k
// and v [B, Hkv, S, D], mask [B or 1, 1, T, S] bool (true = may attend; undefined: causal,
// S == T). Differentiable in q, k and v.
//
// For short sequences it is faster than LibTorch's flash kernel, whose blocking and
// per-thread buffers cost more than the arithmetic there: at one query row (a decode step at
// batch 8 on 2 cores spent 3.4 ms in that kernel, about 2.5 ms more than this), and in the
// forward and backward of a TLM step or a scoring pass over prompts of some 40 tokens
// (README, "Speed"). It keeps [B, Hq, T, S] scores for the backward, so Attention takes it
// only up to kWrittenOutAttentionScores = T * S (and always for one query row over a cache).
constexpr int64_t kWrittenOutAttentionScores = 128 * 128;
at::Tensor written_out_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                 double scale);
// The same with the mask given as scores to add: written_out_attention_bias(mask, T, S) is
// [B or 1, 1, 1, T, S], 0 where a query may attend and -inf elsewhere, in `options`' dtype.
at::Tensor written_out_attention_bias(const at::Tensor& mask, int64_t T, int64_t S, const at::TensorOptions& options);
at::Tensor written_out_attention_with_bias(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           const at::Tensor& bias, double scale);

class Attention {
 public:
  Attention(std::unique_ptr<ColumnParallelLinear> q, std::unique_ptr<ColumnParallelLinear> k,
            std::unique_ptr<ColumnParallelLinear> v, std::unique_ptr<RowParallelLinear> o,
            int64_t head_dim);
  at::Tensor forward(const at::Tensor& x, const AttentionInputs& in) const;  // [B,T,H]->[B,T,H]

  // Qwen3: RMSNorm over head_dim on each q and k head before rotary (weights [D], replicated
  // over TP since they act within a head).
  void set_qk_norm(at::Tensor q_weight, at::Tensor k_weight, double eps) {
    q_norm_ = std::move(q_weight);
    k_norm_ = std::move(k_weight);
    norm_eps_ = eps;
  }
  // The softmax scale (default 1/sqrt(head_dim); Gemma 3: query_pre_attn_scalar^-0.5).
  void set_softmax_scale(double scale) { scale_ = scale; }
  ColumnParallelLinear& q_proj() { return *q_; }
  ColumnParallelLinear& k_proj() { return *k_; }
  ColumnParallelLinear& v_proj() { return *v_; }
  RowParallelLinear& o_proj() { return *o_; }
  int64_t local_kv_heads() const { return k_->out_shard().size() / head_dim_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t weight_bytes() const {
    return q_->weight_bytes() + k_->weight_bytes() + v_->weight_bytes() + o_->weight_bytes() +
           (qkv_ ? qkv_->packed_bytes() : 0) +
           (q_norm_.defined() ? static_cast<int64_t>(q_norm_.nbytes() + k_norm_.nbytes()) : 0);
  }
  // q, k and v as one product from here on (FusedColumnParallelLinear); `backward` as in
  // pack_weight.
  void fuse_qkv(const CommunicatorPtr& tp, bool backward) {
    qkv_ = std::make_unique<FusedColumnParallelLinear>(tp, std::vector<ColumnParallelLinear*>{q_.get(), k_.get(), v_.get()},
                                                       backward);
  }

 private:
  std::unique_ptr<ColumnParallelLinear> q_, k_, v_;
  std::unique_ptr<FusedColumnParallelLinear> qkv_;
  std::unique_ptr<RowParallelLinear> o_;
  at::Tensor q_norm_, k_norm_;  // [D], or undefined
  double norm_eps_ = 1e-6;
  int64_t head_dim_;
  double scale_;
};

}  // namespace tlm
