// WeightSource over a GGUF file: HF names map to llama.cpp's, quantised blocks are
// dequantised at load, and Llama's q/k rows are put back in HF's rotate-half order.
#include <cstring>
#include <map>

#include <ATen/ATen.h>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"
#include "engine/formats/weights_fingerprint.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_source.h"

namespace tlm {
namespace {

// HF suffix after "model.layers.<i>." -> GGUF suffix after "blk.<i>.".
const std::map<std::string, std::string> kLayerNames = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},  // Qwen3
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

const std::map<std::string, std::string> kGlobalNames = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// Gemma 3's converter names its four norms a layer differently: ffn_norm is the norm before the
// MLP (Llama's post_attention_layernorm), post_attention_norm the one on the attention output.
const std::map<std::string, std::string> kGemma3LayerNames = {
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
};

std::optional<std::string> gguf_name(const std::string& hf, bool gemma3) {
  auto g = kGlobalNames.find(hf);
  if (g != kGlobalNames.end()) return g->second;
  const std::string prefix = "model.layers.";
  if (hf.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const size_t dot = hf.find('.', prefix.size());
  if (dot == std::string::npos) return std::nullopt;
  const std::string rest = hf.substr(dot + 1);
  const std::map<std::string, std::string>& names = gemma3 && kGemma3LayerNames.count(rest) ? kGemma3LayerNames
                                                                                             : kLayerNames;
  auto l = names.find(rest);
  if (l == names.end()) return std::nullopt;
  return "blk." + hf.substr(prefix.size(), dot - prefix.size()) + "." + l->second;
}

class GgufWeights final : public WeightSource {
 public:
  GgufWeights(std::shared_ptr<const GgufFile> gguf, const ModelConfig& config)
      : gguf_(std::move(gguf)),
        // llama.cpp's converter permutes q/k rows only for its "llama" architecture.
        permuted_qk_(config.model_type == "llama" || config.model_type == "mistral"),
        gemma3_(config.model_type == "gemma3_text"),
        head_dim_(config.head_dim) {}

  const std::string& path() const override { return gguf_->path(); }
  std::string fingerprint() const override { return weights_fingerprint(*gguf_); }

  bool has(const std::string& hf) const override {
    auto name = gguf_name(hf, gemma3_);
    return name && gguf_->find(*name) != nullptr;
  }

  std::vector<int64_t> shape(const std::string& hf) const override {
    return tensor_of(hf).torch_shape();
  }

  at::Tensor load(const std::string& hf, const WeightSlice& slice) const override {
    const GgufTensor& t = tensor_of(hf);
    const std::vector<int64_t> shape = t.torch_shape();
    const int64_t rows = t.rows();
    const int64_t cols = t.row_size();
    int64_t r0 = 0, r1 = rows;
    if (slice.dim >= 0) {
      TLM_CHECK(slice.dim < static_cast<int>(shape.size()) && slice.begin >= 0 &&
                    slice.begin < slice.end && slice.end <= shape[slice.dim],
                gguf_->path(), ": cannot slice tensor '", t.name, "' (", hf, ") along dim ",
                slice.dim, " as [", slice.begin, ", ", slice.end, ")");
    }
    const bool row_slice = slice.dim == 0 && shape.size() == 2;
    if (row_slice) {
      r0 = slice.begin;
      r1 = slice.end;
    }
    at::Tensor out = at::empty({r1 - r0, cols}, at::kFloat);
    gguf_->dequantize_rows(t, r0, r1, out.data_ptr<float>());
    std::vector<int64_t> out_shape = shape;
    if (row_slice) out_shape[0] = r1 - r0;
    out = out.view(out_shape);
    if (permuted_qk_) out = unpermute_if_qk(hf, out, r0);
    if (slice.dim >= 0 && !row_slice)
      out = out.narrow(slice.dim, slice.begin, slice.end - slice.begin).contiguous();
    return out;
  }

  std::optional<BlockWeight> load_blocks(const std::string& hf) const override {
    const GgufTensor& t = tensor_of(hf);
    if (t.torch_shape().size() != 2 || (t.type != GgmlType::Q4_1 && t.type != GgmlType::Q8_0)) return std::nullopt;
    BlockWeight w;
    w.format = t.type == GgmlType::Q4_1 ? BlockFormat::q4_1 : BlockFormat::q8_0;
    w.in_features = t.row_size();
    const int64_t row_bytes = t.row_size() / 32 * block_bytes(w.format);
    w.bytes = at::empty({t.rows(), row_bytes}, at::kByte);
    std::memcpy(w.bytes.data_ptr<uint8_t>(), gguf_->data(t), static_cast<size_t>(t.rows() * row_bytes));
    if (permuted_qk_) w.bytes = unpermute_if_qk(hf, w.bytes, 0);  // a permutation of whole rows
    return w;
  }

  std::optional<at::Tensor> rope_frequency_factors() const override {
    const GgufTensor* t = gguf_->find("rope_freqs.weight");
    if (!t) return std::nullopt;
    at::Tensor out = at::empty({t->rows() * t->row_size()}, at::kFloat);
    gguf_->dequantize_rows(*t, 0, t->rows(), out.data_ptr<float>());
    return out;
  }

 private:
  const GgufTensor& tensor_of(const std::string& hf) const {
    auto name = gguf_name(hf, gemma3_);
    TLM_CHECK(name.has_value(), gguf_->path(), ": no GGUF tensor corresponds to '", hf, "'");
    const GgufTensor* t = gguf_->find(*name);
    TLM_CHECK(t != nullptr, gguf_->path(), ": tensor '", *name, "' (", hf, ") not found");
    return *t;
  }

  // llama.cpp stores each head's rows of q/k as [head_dim/2, 2] interleaved pairs; HF's
  // rotate-half convention wants [2, head_dim/2]. The permutation stays inside a head, so a
  // slice of whole heads (what TP loads) un-permutes on its own.
  at::Tensor unpermute_if_qk(const std::string& hf, const at::Tensor& w, int64_t row0) const {
    const bool is_q = hf.find("self_attn.q_proj.") != std::string::npos;
    const bool is_k = hf.find("self_attn.k_proj.") != std::string::npos;
    if (!is_q && !is_k) return w;
    TLM_CHECK(row0 % head_dim_ == 0 && w.size(0) % head_dim_ == 0, gguf_->path(), ": slice of '",
              hf, "' does not cover whole heads of ", head_dim_, " rows");
    const int64_t heads = w.size(0) / head_dim_;
    at::Tensor m = w.dim() == 1 ? w.unsqueeze(1) : w;  // [rows, cols]
    const int64_t cols = m.size(1);
    m = m.reshape({heads, head_dim_ / 2, 2, cols}).transpose(1, 2).reshape({heads * head_dim_, cols});
    return (w.dim() == 1 ? m.squeeze(1) : m).contiguous();
  }

  std::shared_ptr<const GgufFile> gguf_;
  bool permuted_qk_;
  bool gemma3_;
  int64_t head_dim_;
};

}  // namespace

std::unique_ptr<WeightSource> open_gguf_weights(std::shared_ptr<const GgufFile> gguf,
                                                const ModelConfig& config) {
  return std::make_unique<GgufWeights>(std::move(gguf), config);
}

}  // namespace tlm
