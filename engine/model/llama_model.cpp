#include "engine/model/llama_model.h"

#include <ATen/ATen.h>

#include "dist/mappings.h"
#include "dist/shard.h"
#include "dist/vocab_parallel_entropy.h"
#include "engine/common/error.h"
#include "engine/model/rms_norm.h"
#include "engine/model/weight_source.h"
#include "engine/model/weight_upload.h"

namespace tlm {

int64_t Projection::in_features() const {
  return column ? column->in_features() : row->in_features();
}
int64_t Projection::out_features() const {
  return column ? column->out_features() : row->out_features();
}
LoraSlot* Projection::lora() const { return column ? column->lora() : row->lora(); }
void Projection::attach_lora(const at::Tensor& A, const at::Tensor& B, double scale) const {
  if (column) column->attach_lora(A, B, scale);
  else row->attach_lora(A, B, scale);
}

namespace {

// Loads this rank's slices of a model's weights in the compute dtype onto its device.
class ShardLoader {
 public:
  ShardLoader(const WeightSource& weights, const CommunicatorPtr& tp, at::ScalarType dtype,
              c10::Device device)
      : w_(weights), tp_(tp), upload_(dtype, device) {}

  at::Tensor whole(const std::string& name) const {
    return upload_(w_.load(name, WeightSlice::whole()));
  }
  std::optional<at::Tensor> optional_whole(const std::string& name) const {
    if (!w_.has(name)) return std::nullopt;
    return whole(name);
  }
  at::Tensor rows(const std::string& name, int64_t full, const std::string& what) const {
    ShardRange r = shard_range(full, tp_->rank(), tp_->size(), what);
    return upload_(w_.load(name, WeightSlice::along(0, r.begin, r.end)));
  }
  // This rank's vocabulary rows (vocab_shard), zero rows appended for the padding.
  at::Tensor vocab_rows(const std::string& name, int64_t vocab) const {
    const ShardRange r = vocab_shard(vocab, tp_->rank(), tp_->size());
    const int64_t real = valid_rows(r, vocab);
    at::Tensor t = upload_(w_.load(name, WeightSlice::along(0, r.begin, r.begin + real)));
    if (real == r.size()) return t;
    return at::cat({t, at::zeros({r.size() - real, t.size(1)}, t.options())});
  }
  at::Tensor cols(const std::string& name, int64_t full, const std::string& what) const {
    ShardRange r = shard_range(full, tp_->rank(), tp_->size(), what);
    return upload_(w_.load(name, WeightSlice::along(1, r.begin, r.end)));
  }

  std::unique_ptr<ColumnParallelLinear> column(const std::string& prefix, int64_t out,
                                               bool bias, const std::string& what) const {
    std::optional<at::Tensor> b;
    if (bias) b = rows(prefix + ".bias", out, what);
    return std::make_unique<ColumnParallelLinear>(tp_, rows(prefix + ".weight", out, what), b, out);
  }
  // A projection whose output rows are whole heads of `head_dim`; KV heads fewer than the
  // TP ranks are replicated (head_shard).
  std::unique_ptr<ColumnParallelLinear> heads(const std::string& prefix, int64_t heads,
                                              int64_t head_dim, bool bias,
                                              const std::string& what) const {
    const ShardRange h = head_shard(heads, tp_->rank(), tp_->size(), what);
    const ShardRange r{h.begin * head_dim, h.end * head_dim};
    std::optional<at::Tensor> b;
    if (bias) b = upload_(w_.load(prefix + ".bias", WeightSlice::along(0, r.begin, r.end)));
    at::Tensor w = upload_(w_.load(prefix + ".weight", WeightSlice::along(0, r.begin, r.end)));
    return std::make_unique<ColumnParallelLinear>(tp_, w, b, heads * head_dim, r,
                                                  head_replicas(heads, tp_->size()));
  }
  std::unique_ptr<RowParallelLinear> row(const std::string& prefix, int64_t in, bool bias,
                                         const std::string& what) const {
    std::optional<at::Tensor> b;
    if (bias) b = whole(prefix + ".bias");
    return std::make_unique<RowParallelLinear>(tp_, cols(prefix + ".weight", in, what), b, in);
  }

 private:
  const WeightSource& w_;
  const CommunicatorPtr& tp_;
  WeightUploader upload_;
};

void check_shape(const WeightSource& w, const std::string& name, std::vector<int64_t> expected) {
  const std::vector<int64_t> got = w.shape(name);
  TLM_CHECK(got == expected, w.path(), ": tensor '", name, "' has shape ",
            at::IntArrayRef(got), ", the config says ", at::IntArrayRef(expected));
}

// The attention mask over a cache of S = past + T slots: causal, within `window` slots when
// set, keys masked by `keys` ([B, S]; undefined = none). [B or 1, 1, T, S] bool (true = may
// attend); undefined for a plain causal pass (no cache, no padding, no window).
at::Tensor causal_mask(int64_t past, int64_t T, int64_t B, std::optional<int64_t> window, const at::Tensor& keys,
                       const at::TensorOptions& index) {
  if (past == 0 && !keys.defined() && !window) return at::Tensor();
  const int64_t S = past + T;
  at::Tensor q_index = at::arange(past, past + T, index).unsqueeze(1);  // [T, 1]
  at::Tensor k_index = at::arange(0, S, index).unsqueeze(0);            // [1, S]
  at::Tensor allowed = (k_index <= q_index);
  if (window) allowed = allowed & (q_index - k_index < *window);
  at::Tensor m = allowed.view({1, 1, T, S});
  if (keys.defined()) m = keys.view({B, 1, 1, S}) & m;
  // A padding query may always see itself, so no row is fully masked (NaN).
  return m | (k_index == q_index).view({1, 1, T, S});
}

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& config, const WeightSource& weights,
                       CommunicatorPtr tp, at::ScalarType dtype, c10::Device device)
    : config_(config),
      tp_(std::move(tp)),
      dtype_(dtype),
      device_(device),
      rotary_(config, weights.rope_frequency_factors(), device),
      weights_fingerprint_(weights.fingerprint()) {
  TLM_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
            "model dtype must be fp32, bf16 or fp16");
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, D = c.head_dim;
  TLM_CHECK(c.num_heads % tp_->size() == 0, "num_attention_heads = ", c.num_heads,
            " is not divisible by the tensor-parallel size ", tp_->size(),
            "; choose a tp size that divides it");
  TLM_CHECK(c.num_kv_heads % tp_->size() == 0 || tp_->size() % c.num_kv_heads == 0,
            "num_key_value_heads = ", c.num_kv_heads, " and the tensor-parallel size ", tp_->size(),
            " clash: one must divide the other (KV heads are split, or replicated when fewer)");
  ShardLoader load(weights, tp_, dtype_, device_);

  check_shape(weights, "model.embed_tokens.weight", {c.vocab_size, H});
  embed_ = std::make_unique<VocabParallelEmbedding>(
      tp_, load.vocab_rows("model.embed_tokens.weight", c.vocab_size), c.vocab_size);
  lm_head_valid_ = embed_->valid_rows();
  if (c.tie_word_embeddings || !weights.has("lm_head.weight")) {
    lm_head_shard_ = embed_->weight();
  } else {
    check_shape(weights, "lm_head.weight", {c.vocab_size, H});
    lm_head_shard_ = load.vocab_rows("lm_head.weight", c.vocab_size);
  }
  // Gemma's norms act as (1 + w): folded in here, in fp32 as transformers computes it (rms_norm
  // then multiplies in fp32 and casts), so every norm below is a plain RMSNorm.
  // (A Gemma GGUF stores 1 + w already; its norms still multiply in fp32.)
  auto norm_weight = [&](const std::string& name) {
    at::Tensor w = load.whole(name);
    if (c.norm_plus_one) return w.to(at::kFloat) + 1.0;
    return c.sandwich_norms ? w.to(at::kFloat) : w;
  };
  check_shape(weights, "model.norm.weight", {H});
  final_norm_.weight = norm_weight("model.norm.weight");
  if (c.local_rope_theta > 0.0) {
    ModelConfig local = c;
    local.rope_theta = c.local_rope_theta;
    local.rope_scaling = RopeScaling{};
    local_rotary_ = std::make_unique<RotaryEmbedding>(local, std::nullopt, device_);
  }

  layers_.reserve(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    check_shape(weights, p + "self_attn.q_proj.weight", {c.num_heads * D, H});
    check_shape(weights, p + "self_attn.k_proj.weight", {c.num_kv_heads * D, H});
    check_shape(weights, p + "self_attn.v_proj.weight", {c.num_kv_heads * D, H});
    check_shape(weights, p + "self_attn.o_proj.weight", {H, c.num_heads * D});
    check_shape(weights, p + "mlp.gate_proj.weight", {c.intermediate_size, H});
    check_shape(weights, p + "mlp.up_proj.weight", {c.intermediate_size, H});
    check_shape(weights, p + "mlp.down_proj.weight", {H, c.intermediate_size});
    check_shape(weights, p + "input_layernorm.weight", {H});
    check_shape(weights, p + "post_attention_layernorm.weight", {H});
    if (c.sandwich_norms) {
      check_shape(weights, p + "pre_feedforward_layernorm.weight", {H});
      check_shape(weights, p + "post_feedforward_layernorm.weight", {H});
    }
    if (c.qkv_bias) {
      check_shape(weights, p + "self_attn.q_proj.bias", {c.num_heads * D});
      check_shape(weights, p + "self_attn.k_proj.bias", {c.num_kv_heads * D});
      check_shape(weights, p + "self_attn.v_proj.bias", {c.num_kv_heads * D});
    }
    if (c.o_bias) check_shape(weights, p + "self_attn.o_proj.bias", {H});
    if (c.qk_norm) {
      check_shape(weights, p + "self_attn.q_norm.weight", {D});
      check_shape(weights, p + "self_attn.k_norm.weight", {D});
    }
    if (c.mlp_bias) {
      check_shape(weights, p + "mlp.gate_proj.bias", {c.intermediate_size});
      check_shape(weights, p + "mlp.up_proj.bias", {c.intermediate_size});
      check_shape(weights, p + "mlp.down_proj.bias", {H});
    }
    Layer layer;
    layer.input_norm.weight = norm_weight(p + "input_layernorm.weight");
    if (c.sandwich_norms) {
      layer.attn_out_norm.weight = norm_weight(p + "post_attention_layernorm.weight");
      layer.post_norm.weight = norm_weight(p + "pre_feedforward_layernorm.weight");
      layer.mlp_out_norm.weight = norm_weight(p + "post_feedforward_layernorm.weight");
    } else {
      layer.post_norm.weight = norm_weight(p + "post_attention_layernorm.weight");
    }
    layer.sliding = c.sliding_layers.empty() ? c.sliding_window.has_value() : c.sliding_layers[static_cast<size_t>(i)];
    layer.attention = std::make_unique<Attention>(
        load.heads(p + "self_attn.q_proj", c.num_heads, D, c.qkv_bias, "num_attention_heads"),
        load.heads(p + "self_attn.k_proj", c.num_kv_heads, D, c.qkv_bias, "num_key_value_heads"),
        load.heads(p + "self_attn.v_proj", c.num_kv_heads, D, c.qkv_bias, "num_key_value_heads"),
        load.row(p + "self_attn.o_proj", c.num_heads * D, c.o_bias, "o_proj columns"), D);
    if (c.qk_norm)
      layer.attention->set_qk_norm(norm_weight(p + "self_attn.q_norm.weight"), norm_weight(p + "self_attn.k_norm.weight"),
                                   c.rms_norm_eps);
    if (c.attention_scale) layer.attention->set_softmax_scale(*c.attention_scale);
    layer.mlp = std::make_unique<Mlp>(
        load.column(p + "mlp.gate_proj", c.intermediate_size, c.mlp_bias, "intermediate_size"),
        load.column(p + "mlp.up_proj", c.intermediate_size, c.mlp_bias, "intermediate_size"),
        load.row(p + "mlp.down_proj", c.intermediate_size, c.mlp_bias, "intermediate_size"),
        c.mlp_activation == "gelu_tanh");
    layers_.push_back(std::move(layer));
  }
}

at::Tensor LlamaModel::forward_hidden(const at::Tensor& ids, const at::Tensor& attention_mask,
                                      KvCache* cache, std::vector<at::Tensor>* residuals) const {
  const bool padded = attention_mask.defined();
  TLM_CHECK(ids.dim() == 2 && (!padded || attention_mask.sizes() == ids.sizes()), "forward: ids ",
            ids.sizes(), " and attention_mask ", padded ? attention_mask.sizes() : ids.sizes(),
            " must both be [B, T]");
  const int64_t B = ids.size(0), T = ids.size(1);
  const at::TensorOptions index = ids.options().dtype(at::kLong);
  at::Tensor mask = padded ? attention_mask.to(at::kBool) : at::Tensor();  // [B, T]
  at::Tensor positions = padded ? (mask.to(at::kLong).cumsum(1) - 1).clamp_min(0)
                                : at::arange(T, index).unsqueeze(0).expand({B, T});  // [B, T]
  const int64_t past = cache ? cache->length : 0;
  if (cache) {
    TLM_CHECK(past + T <= cache->capacity(), "KV cache full: ", past, " + ", T, " > ",
              cache->capacity());
    positions = positions + cache->next_position.unsqueeze(1);
    if (padded) cache->key_mask.narrow(1, past, T).copy_(mask);
    else cache->key_mask.narrow(1, past, T).fill_(true);
  }

  // Global layers, and (Gemma 3) sliding-window layers with their own rotary base and mask.
  const ModelConfig& c = config_;
  const at::Tensor keys = cache ? cache->key_mask.narrow(1, 0, past + T) : mask;  // [B, S] or undefined
  AttentionInputs global;
  std::tie(global.cos, global.sin) = rotary_.cos_sin(positions, dtype_);
  global.cache = cache;
  global.mask = causal_mask(past, T, B, c.sliding_layers.empty() ? c.sliding_window : std::nullopt, keys, index);
  AttentionInputs local;
  if (!c.sliding_layers.empty()) {
    local = global;
    if (local_rotary_) std::tie(local.cos, local.sin) = local_rotary_->cos_sin(positions, dtype_);
    local.mask = causal_mask(past, T, B, c.sliding_window, keys, index);
  }

  at::Tensor x = embed_->forward(ids);  // [B, T, H]
  if (c.embedding_scale != 1.0) x = x * at::scalar_tensor(c.embedding_scale, x.options());  // in x's dtype, as HF
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& layer = layers_[i];
    AttentionInputs& in = layer.sliding && !c.sliding_layers.empty() ? local : global;
    in.layer = static_cast<int>(i);
    at::Tensor a = layer.attention->forward(rms_norm(x, layer.input_norm, c.rms_norm_eps), in);
    if (c.sandwich_norms) a = rms_norm(a, layer.attn_out_norm, c.rms_norm_eps);
    x = x + a;
    at::Tensor m = layer.mlp->forward(rms_norm(x, layer.post_norm, c.rms_norm_eps));
    if (c.sandwich_norms) m = rms_norm(m, layer.mlp_out_norm, c.rms_norm_eps);
    x = x + m;
    if (residuals) residuals->push_back(x);
  }
  if (cache) {
    cache->length += T;
    if (padded) cache->next_position += mask.to(at::kLong).sum(1);
    else cache->next_position += T;
  }
  return rms_norm(x, final_norm_, config_.rms_norm_eps);
}

at::Tensor LlamaModel::logits(const at::Tensor& ids, const at::Tensor& attention_mask) const {
  at::Tensor h = forward_hidden(ids, attention_mask);
  const int64_t B = h.size(0), T = h.size(1);
  return logits_of(h.reshape({B * T, -1})).view({B, T, -1});
}

at::Tensor LlamaModel::logits_of(const at::Tensor& hidden) const {
  return vocab_parallel_logits(hidden, lm_head_shard_, tp_, config_.vocab_size).to(at::kFloat);
}

at::Tensor LlamaModel::token_log_likelihoods(const at::Tensor& ids,
                                             const at::Tensor& attention_mask,
                                             int64_t chunk_rows) const {
  TLM_CHECK(ids.size(1) >= 2, "token_log_likelihoods needs at least 2 tokens per row, got ", ids.size(1));
  return log_likelihoods_of(forward_hidden(ids, attention_mask), ids, attention_mask, chunk_rows);
}

at::Tensor LlamaModel::log_likelihoods_of(const at::Tensor& h, const at::Tensor& ids,
                                          const at::Tensor& attention_mask, int64_t chunk_rows) const {
  const int64_t B = ids.size(0), T = ids.size(1);
  TLM_CHECK(T >= 2, "token log-likelihoods need at least 2 tokens per row, got ", T);
  at::Tensor targets = ids.narrow(1, 1, T - 1);        // [B, T-1]
  if (attention_mask.defined()) {
    at::Tensor mask = attention_mask.to(at::kBool);
    at::Tensor valid = mask.narrow(1, 0, T - 1) & mask.narrow(1, 1, T - 1);
    targets = targets.masked_fill(~valid, -100);
  }
  at::Tensor hidden = h.narrow(1, 0, T - 1).reshape({B * (T - 1), -1});
  at::Tensor logp = vocab_parallel_token_log_likelihood(hidden, lm_head_shard_,
                                                        targets.reshape({-1}), tp_, chunk_rows, lm_head_valid_);
  return logp.view({B, T - 1});
}

at::Tensor LlamaModel::entropies_of(const at::Tensor& h, const at::Tensor& attention_mask,
                                    int64_t chunk_rows) const {
  const int64_t B = h.size(0), T = h.size(1);
  at::Tensor e = vocab_parallel_entropy(h.reshape({B * T, -1}), lm_head_shard_, tp_, chunk_rows, lm_head_valid_)
                     .view({B, T});
  if (attention_mask.defined()) e = e.masked_fill(~attention_mask.to(at::kBool), 0.0);
  return e;
}

at::Tensor LlamaModel::mean_probabilities_of(const at::Tensor& h, const at::Tensor& positions,
                                             int64_t chunk_rows) const {
  const int64_t B = h.size(0), T = h.size(1);
  TLM_CHECK(positions.sizes() == at::IntArrayRef({B, T}), "mean_probabilities_of: positions ", positions.sizes(),
            " do not match hidden ", h.sizes());
  at::Tensor row = at::arange(B, positions.options().dtype(at::kLong)).unsqueeze(1).expand({B, T});
  at::Tensor group = row.masked_fill(~positions.to(at::kBool), -1).reshape({-1});  // [B*T]
  return vocab_parallel_mean_probs(h.reshape({B * T, -1}), lm_head_shard_, group, B, tp_, chunk_rows,
                                   lm_head_valid_);
}

at::Tensor LlamaModel::shard_logits_of(const at::Tensor& rows) const {
  TLM_CHECK(rows.dim() == 2, "shard_logits_of: rows must be [N, H], got ", rows.sizes());
  return real_columns(linear(copy_to_tp_region(rows, tp_), lm_head_shard_).to(at::kFloat), lm_head_valid_);
}

KvCache LlamaModel::make_cache(int64_t batch, int64_t capacity) const {
  KvCache c;
  const int64_t kv_local = head_shard(config_.num_kv_heads, tp_->rank(), tp_->size(), "num_key_value_heads").size();
  const at::TensorOptions on_device = at::TensorOptions().device(device_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    c.keys.push_back(at::zeros({batch, kv_local, capacity, config_.head_dim}, on_device.dtype(dtype_)));
    c.values.push_back(at::zeros({batch, kv_local, capacity, config_.head_dim}, on_device.dtype(dtype_)));
  }
  c.key_mask = at::zeros({batch, capacity}, on_device.dtype(at::kBool));
  c.next_position = at::zeros({batch}, on_device.dtype(at::kLong));
  return c;
}

int64_t LlamaModel::weight_bytes() const {
  int64_t total = static_cast<int64_t>(embed_->weight().nbytes()) + static_cast<int64_t>(final_norm_.weight.nbytes());
  if (!lm_head_shard_.plain.is_same(embed_->weight())) total += static_cast<int64_t>(lm_head_shard_.plain.nbytes());
  total += lm_head_shard_.packed_bytes();
  for (const Layer& l : layers_) {
    total += static_cast<int64_t>(l.input_norm.weight.nbytes() + l.post_norm.weight.nbytes());
    if (config_.sandwich_norms)
      total += static_cast<int64_t>(l.attn_out_norm.weight.nbytes() + l.mlp_out_norm.weight.nbytes());
    total += l.attention->weight_bytes() + l.mlp->weight_bytes();
  }
  return total;
}

void LlamaModel::pack_weights(bool backward) {
  // Measured on 2 cores (tests/bench): one q/k/v product is faster at 1 to 43 rows; one
  // gate/up product is faster at 1-8 rows (decoding) but slower at a prompt's 40-odd rows,
  // forward and backward, so a model that trains keeps gate and up apart. A fused group
  // packs its own copy, so its members are not packed one by one.
  for (Layer& layer : layers_) {
    Attention& a = *layer.attention;
    Mlp& m = *layer.mlp;
    a.fuse_qkv(tp_, backward);
    a.o_proj().pack_weight(backward);
    if (backward) {
      m.gate_proj().pack_weight(backward);
      m.up_proj().pack_weight(backward);
    } else {
      m.fuse_gate_up(tp_, backward);
    }
    m.down_proj().pack_weight(backward);
  }
  pack(lm_head_shard_, backward);
}

int64_t LlamaModel::keep_weight_blocks(const WeightSource& weights) {
  TLM_CHECK(device_.is_cpu() && dtype_ == at::kFloat, "GGUF block weights are for fp32 on the CPU; this model is ",
            toString(dtype_), " on ", device_.str());
  int64_t kept = 0;
  for (const Projection& p : projections()) {
    std::optional<BlockWeight> full = weights.load_blocks(p.name + ".weight");
    if (!full) continue;
    if (p.column) {
      const ShardRange r = p.column->out_shard();
      p.column->set_blocks(block_rows(*full, r.begin, r.end));
    } else {
      const ShardRange r = p.row->in_shard();
      if (r.begin % 32 != 0 || r.end % 32 != 0) continue;  // a TP slice that splits blocks stays fp32
      p.row->set_blocks(block_columns(*full, r.begin, r.end));
    }
    ++kept;
  }
  const bool tied = lm_head_shard_.plain.is_same(embed_->weight());
  if (std::optional<BlockWeight> head = weights.load_blocks(tied ? "model.embed_tokens.weight" : "lm_head.weight")) {
    const ShardRange r = vocab_shard(config_.vocab_size, tp_->rank(), tp_->size());
    BlockWeight mine = block_rows(*head, r.begin, r.begin + lm_head_valid_);
    if (lm_head_valid_ < r.size()) {  // padding rows: all-zero blocks are d = m = 0, values 0
      at::Tensor pad = at::zeros({r.size() - lm_head_valid_, mine.bytes.size(1)}, mine.bytes.options());
      mine.bytes = at::cat({mine.bytes, pad});
    }
    lm_head_shard_.blocks = std::move(mine);
    ++kept;
  }
  return kept;
}

std::vector<Projection> LlamaModel::projections() {
  std::vector<Projection> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Attention& a = *layers_[i].attention;
    Mlp& m = *layers_[i].mlp;
    out.push_back({p + "self_attn.q_proj", &a.q_proj(), nullptr});
    out.push_back({p + "self_attn.k_proj", &a.k_proj(), nullptr});
    out.push_back({p + "self_attn.v_proj", &a.v_proj(), nullptr});
    out.push_back({p + "self_attn.o_proj", nullptr, &a.o_proj()});
    out.push_back({p + "mlp.gate_proj", &m.gate_proj(), nullptr});
    out.push_back({p + "mlp.up_proj", &m.up_proj(), nullptr});
    out.push_back({p + "mlp.down_proj", nullptr, &m.down_proj()});
  }
  return out;
}

std::vector<Norm> LlamaModel::norms() {
  std::vector<Norm> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back({p + "input_layernorm", &layers_[i].input_norm});
    if (config_.sandwich_norms) {  // HF's names: post_attention_layernorm is on the attention output here
      out.push_back({p + "post_attention_layernorm", &layers_[i].attn_out_norm});
      out.push_back({p + "pre_feedforward_layernorm", &layers_[i].post_norm});
      out.push_back({p + "post_feedforward_layernorm", &layers_[i].mlp_out_norm});
    } else {
      out.push_back({p + "post_attention_layernorm", &layers_[i].post_norm});
    }
  }
  out.push_back({"model.norm", &final_norm_});
  return out;
}

}  // namespace tlm
