// Grouped-query self-attention through at::scaled_dot_product_attention. q/k/v are
// column-parallel (heads split over TP ranks), o is row-parallel; the class never looks at
// the communicator itself.
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
};

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
