// The shape of a Llama-family decoder, read from an HF config.json or from GGUF metadata.
// Llama 2/3/3.1/3.2, Mistral, Qwen2/2.5, Qwen3 (dense), SmolLM2 and Gemma 3 (text) all fit it;
// the differences are flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tlm {

class GgufFile;

struct RopeScaling {
  std::string type = "default";  // "default", "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string model_type = "llama";  // "llama", "mistral", "qwen2", "qwen3", "gemma3_text"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool qkv_bias = false;   // Qwen2, or Llama's attention_bias
  bool qk_norm = false;    // Qwen3: RMSNorm over head_dim on every q and k head, before rotary
  bool o_bias = false;     // Llama's attention_bias
  bool mlp_bias = false;   // Llama's mlp_bias
  bool tie_word_embeddings = false;
  std::optional<int64_t> sliding_window;  // Mistral (when set and enabled), Gemma 3's local layers
  // Gemma 3: the flags its decoder differs by.
  bool sandwich_norms = false;  // RMSNorm on the attention and MLP outputs too, before each residual add
  bool norm_plus_one = false;   // RMSNorm weights act as (1 + w); the loader folds the 1 in
  double embedding_scale = 1.0;          // token embeddings times this (sqrt(hidden_size))
  std::string mlp_activation = "silu";   // "silu" (SwiGLU) or "gelu_tanh" (GeGLU, tanh-approximated GELU)
  std::optional<double> attention_scale;  // softmax scale; default 1/sqrt(head_dim)
  std::vector<bool> sliding_layers;  // per layer: sliding-window attention; empty = all layers (Mistral)
  double local_rope_theta = 0.0;     // rotary base of the sliding layers; 0 = rope_theta
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;

  // Throws naming the file and field: missing or mistyped fields, unsupported
  // architectures ("model_type 'gpt_neox' is not a Llama-family model"), unknown rope types.
  static ModelConfig from_hf_json(const std::string& config_json_path);
  static ModelConfig from_gguf(const GgufFile& gguf);

  // Checks the numbers agree with each other (heads divide hidden size, ...).
  void validate(const std::string& source) const;
  // A stable hash of the fields that define the architecture (for checkpoint identity).
  std::string summary() const;
};

}  // namespace tlm
