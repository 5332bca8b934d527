// The Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM2), written once. It is built
// from dist/'s parallel layers and never asks whether it is distributed: with a size-1
// communicator every layer is the plain one.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/communicator.h"
#include "dist/tp_linear.h"
#include "dist/vocab_parallel.h"
#include "engine/model/attention.h"
#include "engine/model/kv_cache.h"
#include "engine/model/mlp.h"
#include "engine/model/model_config.h"
#include "engine/model/rms_norm.h"
#include "engine/model/rotary.h"

namespace tlm {

class WeightSource;

// One projection of the model by its HF module name ("model.layers.3.self_attn.q_proj"):
// exactly one of the two pointers is set. LoRA attaches here.
struct Projection {
  std::string name;
  ColumnParallelLinear* column = nullptr;
  RowParallelLinear* row = nullptr;
  int64_t in_features() const;   // full (unsharded)
  int64_t out_features() const;  // full (unsharded)
  LoraSlot* lora() const;
  void attach_lora(const at::Tensor& A_full, const at::Tensor& B_full, double scale) const;
};

// One RMSNorm of the model by its HF module name ("model.layers.3.input_layernorm",
// "model.norm"). Norm-affine tuning attaches here.
struct Norm {
  std::string name;
  NormSlot* slot = nullptr;
};

class LlamaModel {
 public:
  // Loads this rank's slices of every weight from `weights` in `dtype` (fp32, bf16, fp16)
  // onto `device`, where every tensor the model makes lives (tp's back end must carry it).
  LlamaModel(const ModelConfig& config, const WeightSource& weights, CommunicatorPtr tp,
             at::ScalarType dtype, c10::Device device = c10::Device(c10::kCPU));

  // ids [B, T] int64 on the model's device, attention_mask [B, T] (1 = token, 0 = padding,
  // left or right; undefined = every token is real, the causal fast path) -> final-normed
  // hidden states [B, T, H]. Rotary positions count only real tokens, so a padded row
  // computes what it would alone. With a cache the T tokens are appended to it. With
  // `residuals`, the residual stream after each layer [B, T, H] is appended to it (ScaleNet's
  // features), in the autograd graph as computed.
  at::Tensor forward_hidden(const at::Tensor& ids, const at::Tensor& attention_mask,
                            KvCache* cache = nullptr, std::vector<at::Tensor>* residuals = nullptr) const;
  // Full-vocabulary fp32 logits [B, T, V] (tests and small inputs; scoring does not use it).
  at::Tensor logits(const at::Tensor& ids, const at::Tensor& attention_mask) const;
  // Full-vocabulary fp32 logits of hidden states [N, H] -> [N, V] (next-token choice).
  at::Tensor logits_of(const at::Tensor& hidden) const;
  // log p(ids[b, t+1] | ids[b, <=t]) as fp32 [B, T-1]; 0 where either token is padding.
  // Goes through vocab_parallel_token_log_likelihood: logits exist `chunk_rows` rows at a time.
  at::Tensor token_log_likelihoods(const at::Tensor& ids, const at::Tensor& attention_mask,
                                   int64_t chunk_rows = 64) const;

  // The output head on hidden states [B, T, H] of forward_hidden, so that one forward serves
  // several statistics (a loss of NLL and entropy, EATA's entropy and mean probabilities).
  // None gathers full logits. `attention_mask` as in forward_hidden (undefined: no padding).
  at::Tensor log_likelihoods_of(const at::Tensor& hidden, const at::Tensor& ids,
                                const at::Tensor& attention_mask, int64_t chunk_rows = 64) const;  // [B, T-1]
  // Entropy of the next-token distribution at every position, fp32 [B, T], 0 at padding.
  // Differentiable through `hidden`.
  at::Tensor entropies_of(const at::Tensor& hidden, const at::Tensor& attention_mask,
                          int64_t chunk_rows = 64) const;
  // This rank's shard of each row's mean next-token distribution over the positions where
  // `positions` [B, T] (bool) is true, fp32 [B, V/tp] (the shard's real columns); no gradient.
  at::Tensor mean_probabilities_of(const at::Tensor& hidden, const at::Tensor& positions,
                                   int64_t chunk_rows = 64) const;

  // This rank's fp32 logit shard [N, V/tp] (its real columns) of hidden rows [N, H] (rows picked from
  // forward_hidden's output), differentiable through `rows`, for the objectives whose
  // statistics are composed from dist/vocab_parallel_rows.h.
  at::Tensor shard_logits_of(const at::Tensor& rows) const;

  KvCache make_cache(int64_t batch, int64_t capacity) const;

  // Every projection in layer order: q, k, v, o, gate, up, down.
  std::vector<Projection> projections();
  // Every RMSNorm in layer order (input, post-attention), then the final norm.
  std::vector<Norm> norms();
  const ModelConfig& config() const { return config_; }
  // The base weights' fingerprint (WeightSource::fingerprint), taken at load.
  const std::string& weights_fingerprint() const { return weights_fingerprint_; }
  const CommunicatorPtr& tp() const { return tp_; }
  at::ScalarType dtype() const { return dtype_; }
  const c10::Device& device() const { return device_; }
  // Bytes of this rank's weight slices (embedding shared with a tied head counted once),
  // packed copies included.
  int64_t weight_bytes() const;
  // Makes oneDNN's prepacked copy of every projection's weight and of the output head
  // (engine/kernels/linear_weight.h), and with `backward` the transposed copies for input
  // gradients (training); q/k/v then run as one product, and gate/up too when not
  // training. CPU fp32 only: can_pack() says where.
  void pack_weights(bool backward);
  // Keeps every projection and the output head that `weights` stores in GGUF blocks the kernel
  // reads (Q4_1, Q8_0) in those blocks too, this rank's slice of them, for products of up to
  // max_block_rows() rows (decoding; engine/kernels/block_weight.h). Call before pack_weights (a
  // fused group takes its members' blocks). CPU fp32 only. Returns how many weights got them.
  int64_t keep_weight_blocks(const WeightSource& weights);

 private:
  struct Layer {
    NormSlot input_norm;     // [H] before attention
    NormSlot post_norm;      // [H] before the MLP (Llama's post_attention_layernorm, Gemma's pre_feedforward)
    NormSlot attn_out_norm;  // [H] sandwich norms (Gemma 3): on the attention output,
    NormSlot mlp_out_norm;   //     and on the MLP output, before each residual add
    bool sliding = false;    // sliding-window attention with the local rotary base
    std::unique_ptr<Attention> attention;
    std::unique_ptr<Mlp> mlp;
  };

  ModelConfig config_;
  CommunicatorPtr tp_;
  at::ScalarType dtype_;
  c10::Device device_;
  std::unique_ptr<VocabParallelEmbedding> embed_;
  LinearWeight lm_head_shard_;  // [P, H] (dist/vocab_parallel.h); its plain tensor is the embedding shard when tied
  int64_t lm_head_valid_ = 0;   // its real rows: P, or fewer on the last ranks of a padded vocabulary
  NormSlot final_norm_;
  std::vector<Layer> layers_;
  RotaryEmbedding rotary_;
  std::unique_ptr<RotaryEmbedding> local_rotary_;  // sliding layers' own base (Gemma 3), or none
  std::string weights_fingerprint_;
};

}  // namespace tlm
