#include "engine/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"

namespace tlm {
namespace {

using nlohmann::json;

const std::set<std::string> kSupportedHfTypes = {"llama", "mistral", "qwen2", "qwen3", "gemma3_text"};
const std::set<std::string> kSupportedGgufArchs = {"llama", "mistral", "qwen2", "qwen3", "gemma3"};

template <typename T>
T required(const json& j, const char* key, const std::string& path) {
  TLM_CHECK(j.contains(key) && !j.at(key).is_null(), path, ": field '", key, "' is missing");
  // nlohmann converts a float to an integer type with a plain cast: 4.5 would read as 4, and
  // 1e40 is undefined behaviour.
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    TLM_CHECK(j.at(key).is_number_integer(), path, ": field '", key, "' has the wrong type (", j.at(key).type_name(),
              "): an integer is expected, got ", j.at(key).dump());
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    TLM_FAIL(path, ": field '", key, "' has the wrong type (", j.at(key).type_name(), ")");
  }
}

template <typename T>
T optional_field(const json& j, const char* key, T fallback, const std::string& path) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  return required<T>(j, key, path);
}

// eos_token_id may be an int or a list (Llama 3.1); the first one is the primary EOS.
std::optional<int64_t> token_id_field(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const json& v = j.at(key);
  if (v.is_array()) {
    TLM_CHECK(!v.empty() && v.at(0).is_number_integer(), path, ": field '", key,
              "' must be an integer or a non-empty list of integers");
    return v.at(0).get<int64_t>();
  }
  TLM_CHECK(v.is_number_integer(), path, ": field '", key, "' must be an integer");
  return v.get<int64_t>();
}

RopeScaling parse_rope(const json& params, const std::string& path, const char* field) {
  RopeScaling r;
  std::string type = "default";
  if (params.contains("rope_type")) type = required<std::string>(params, "rope_type", path);
  else if (params.contains("type")) type = required<std::string>(params, "type", path);
  TLM_CHECK(type == "default" || type == "linear" || type == "llama3", path, ": field '",
            field, "' has rope type '", type,
            "', which tlm does not support (default, linear, llama3)");
  r.type = type;
  if (type == "linear" || type == "llama3") r.factor = required<double>(params, "factor", path);
  if (type == "llama3") {
    r.low_freq_factor = required<double>(params, "low_freq_factor", path);
    r.high_freq_factor = required<double>(params, "high_freq_factor", path);
    r.original_max_position_embeddings =
        required<int64_t>(params, "original_max_position_embeddings", path);
  }
  return r;
}

// Gemma 3 (text): sandwich norms with (1 + w) weights, GeGLU, scaled embeddings, q/k norms,
// sliding-window attention on the local layers (layer_types, or every layer but each
// sliding_window_pattern-th) with their own rotary base.
void read_gemma3(const json& j, const std::string& path, ModelConfig& c) {
  const std::string act = optional_field<std::string>(j, "hidden_activation", "gelu_pytorch_tanh", path);
  TLM_CHECK(act == "gelu_pytorch_tanh", path, ": field 'hidden_activation' is '", act,
            "'; tlm implements Gemma 3's gelu_pytorch_tanh");
  for (const char* cap : {"final_logit_softcapping", "attn_logit_softcapping"})
    TLM_CHECK(!j.contains(cap) || j.at(cap).is_null(), path, ": field '", cap, "' is set; tlm implements Gemma 3 "
              "without soft-capping (Gemma 2 has it)");
  c.mlp_activation = "gelu_tanh";
  c.sandwich_norms = c.norm_plus_one = c.qk_norm = true;
  c.qkv_bias = c.o_bias = optional_field<bool>(j, "attention_bias", false, path);
  c.embedding_scale = std::sqrt(static_cast<double>(c.hidden_size));
  c.attention_scale = 1.0 / std::sqrt(optional_field<double>(j, "query_pre_attn_scalar",
                                                              static_cast<double>(c.head_dim), path));
  c.sliding_window = required<int64_t>(j, "sliding_window", path);
  if (j.contains("layer_types") && j.at("layer_types").is_array()) {
    for (const json& t : j.at("layer_types")) {
      TLM_CHECK(t == "sliding_attention" || t == "full_attention", path, ": field 'layer_types' holds ", t.dump(),
                " (sliding_attention or full_attention)");
      c.sliding_layers.push_back(t == "sliding_attention");
    }
    TLM_CHECK(static_cast<int64_t>(c.sliding_layers.size()) == c.num_layers, path, ": field 'layer_types' has ",
              c.sliding_layers.size(), " entries for ", c.num_layers, " layers");
  } else {
    const int64_t pattern = optional_field<int64_t>(j, "sliding_window_pattern", 6, path);
    for (int64_t i = 0; i < c.num_layers; ++i) c.sliding_layers.push_back((i + 1) % pattern != 0);
  }
  // transformers 5: rope_parameters per layer type; older files: rope_theta + rope_local_base_freq.
  if (j.contains("rope_parameters") && j.at("rope_parameters").contains("full_attention")) {
    const json& p = j.at("rope_parameters");
    c.rope_theta = optional_field<double>(p.at("full_attention"), "rope_theta", 1e6, path);
    c.rope_scaling = parse_rope(p.at("full_attention"), path, "rope_parameters.full_attention");
    const json local = p.value("sliding_attention", json::object());
    c.local_rope_theta = optional_field<double>(local, "rope_theta", 1e4, path);
    TLM_CHECK(parse_rope(local, path, "rope_parameters.sliding_attention").type == "default", path,
              ": rope_parameters.sliding_attention must be the default rope");
  } else {
    c.rope_theta = optional_field<double>(j, "rope_theta", 1e6, path);
    c.local_rope_theta = optional_field<double>(j, "rope_local_base_freq", 1e4, path);
    if (j.contains("rope_scaling") && j.at("rope_scaling").is_object())
      c.rope_scaling = parse_rope(j.at("rope_scaling"), path, "rope_scaling");
  }
  c.bos_token_id = token_id_field(j, "bos_token_id", path);
  c.eos_token_id = token_id_field(j, "eos_token_id", path);
}

}  // namespace

ModelConfig ModelConfig::from_hf_json(const std::string& path) {
  std::ifstream in(path);
  TLM_CHECK(in.good(), path, ": cannot open the model config");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    TLM_FAIL(path, ": not valid JSON (", e.what(), ")");
  }
  TLM_CHECK(j.is_object(), path, ": the config must be a JSON object");
  ModelConfig c;
  c.model_type = required<std::string>(j, "model_type", path);
  TLM_CHECK(kSupportedHfTypes.count(c.model_type), path, ": model_type '", c.model_type,
            "' is not a Llama-family model tlm supports (llama, mistral, qwen2, qwen3, gemma3_text)");
  c.vocab_size = required<int64_t>(j, "vocab_size", path);
  c.hidden_size = required<int64_t>(j, "hidden_size", path);
  c.intermediate_size = required<int64_t>(j, "intermediate_size", path);
  c.num_layers = required<int64_t>(j, "num_hidden_layers", path);
  c.num_heads = required<int64_t>(j, "num_attention_heads", path);
  c.num_kv_heads = optional_field<int64_t>(j, "num_key_value_heads", c.num_heads, path);
  c.head_dim = optional_field<int64_t>(j, "head_dim", 0, path);
  if (c.head_dim == 0 && c.num_heads > 0) c.head_dim = c.hidden_size / c.num_heads;
  c.max_position_embeddings =
      optional_field<int64_t>(j, "max_position_embeddings", c.max_position_embeddings, path);
  c.rms_norm_eps = optional_field<double>(j, "rms_norm_eps", c.rms_norm_eps, path);
  c.tie_word_embeddings = optional_field<bool>(j, "tie_word_embeddings", c.model_type == "gemma3_text", path);
  if (c.model_type == "gemma3_text") {
    read_gemma3(j, path, c);
    c.validate(path);
    return c;
  }
  const std::string act = optional_field<std::string>(j, "hidden_act", "silu", path);
  TLM_CHECK(act == "silu", path, ": field 'hidden_act' is '", act, "'; tlm implements silu");

  // transformers 5 writes rope_parameters {rope_type, rope_theta, ...}; older files have
  // rope_theta plus an optional rope_scaling object.
  if (j.contains("rope_parameters") && j.at("rope_parameters").is_object()) {
    const json& p = j.at("rope_parameters");
    c.rope_theta = optional_field<double>(p, "rope_theta", c.rope_theta, path);
    c.rope_scaling = parse_rope(p, path, "rope_parameters");
  } else {
    c.rope_theta = optional_field<double>(j, "rope_theta", c.rope_theta, path);
    if (j.contains("rope_scaling") && j.at("rope_scaling").is_object())
      c.rope_scaling = parse_rope(j.at("rope_scaling"), path, "rope_scaling");
  }

  if (c.model_type == "qwen2") {
    c.qkv_bias = true;
  } else if (c.model_type == "qwen3") {  // per-head RMSNorm on q and k; biases only if asked
    c.qk_norm = true;
    c.qkv_bias = c.o_bias = optional_field<bool>(j, "attention_bias", false, path);
  } else {
    const bool attention_bias = optional_field<bool>(j, "attention_bias", false, path);
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
    c.mlp_bias = optional_field<bool>(j, "mlp_bias", false, path);
  }
  // Sliding windows only bite on sequences longer than the window; they are honoured so
  // that long Mistral prompts match transformers.
  const bool use_sliding = c.model_type == "mistral" ||
                           optional_field<bool>(j, "use_sliding_window", false, path);
  if (use_sliding && j.contains("sliding_window") && j.at("sliding_window").is_number_integer())
    c.sliding_window = j.at("sliding_window").get<int64_t>();
  c.bos_token_id = token_id_field(j, "bos_token_id", path);
  c.eos_token_id = token_id_field(j, "eos_token_id", path);
  c.validate(path);
  return c;
}

ModelConfig ModelConfig::from_gguf(const GgufFile& gguf) {
  const std::string arch = gguf.get_string("general.architecture");
  TLM_CHECK(kSupportedGgufArchs.count(arch), gguf.path(), ": general.architecture '", arch,
            "' is not a Llama-family model tlm supports (llama, mistral, qwen2, qwen3, gemma3)");
  const std::string p = arch + ".";
  ModelConfig c;
  c.model_type = arch == "gemma3" ? "gemma3_text" : arch;
  c.hidden_size = gguf.get_int(p + "embedding_length");
  c.intermediate_size = gguf.get_int(p + "feed_forward_length");
  c.num_layers = gguf.get_int(p + "block_count");
  c.num_heads = gguf.get_int(p + "attention.head_count");
  c.num_kv_heads = gguf.get_int_or(p + "attention.head_count_kv", c.num_heads);
  c.head_dim = gguf.get_int_or(p + "attention.key_length", c.hidden_size / c.num_heads);
  c.max_position_embeddings = gguf.get_int_or(p + "context_length", c.max_position_embeddings);
  c.rms_norm_eps = gguf.get_float(p + "attention.layer_norm_rms_epsilon");
  c.rope_theta = gguf.get_float_or(p + "rope.freq_base", c.rope_theta);
  if (gguf.has(p + "vocab_size")) {
    c.vocab_size = gguf.get_int(p + "vocab_size");
  } else {
    c.vocab_size = static_cast<int64_t>(gguf.get_string_array("tokenizer.ggml.tokens").size());
  }
  const std::string scaling = gguf.get_string_or(p + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = gguf.get_float(p + "rope.scaling.factor");
  } else {
    TLM_CHECK(scaling == "none", gguf.path(), ": ", p, "rope.scaling.type '", scaling,
              "' is not supported (none, linear; llama3 comes as rope_freqs.weight)");
  }
  c.qkv_bias = gguf.find("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = gguf.find("blk.0.attn_q_norm.weight") != nullptr;
  c.o_bias = gguf.find("blk.0.attn_output.bias") != nullptr;
  c.tie_word_embeddings = gguf.find("output.weight") == nullptr;
  if (gguf.has("tokenizer.ggml.bos_token_id")) c.bos_token_id = gguf.get_int("tokenizer.ggml.bos_token_id");
  if (gguf.has("tokenizer.ggml.eos_token_id")) c.eos_token_id = gguf.get_int("tokenizer.ggml.eos_token_id");
  if (arch == "gemma3") {
    // What llama.cpp fixes for Gemma 3 rather than storing: every 6th layer global, the others
    // sliding with rotary base 10000, softmax scale 1/sqrt(head_dim) (query_pre_attn_scalar =
    // head_dim, as in the released models but 27B). Its converter stores norms as 1 + w.
    c.sandwich_norms = true;
    c.mlp_activation = "gelu_tanh";
    c.embedding_scale = std::sqrt(static_cast<double>(c.hidden_size));
    c.attention_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    c.sliding_window = gguf.get_int(p + "attention.sliding_window");
    for (int64_t i = 0; i < c.num_layers; ++i) c.sliding_layers.push_back((i + 1) % 6 != 0);
    c.local_rope_theta = 10000.0;
  }
  c.validate(gguf.path());
  return c;
}

void ModelConfig::validate(const std::string& source) const {
  TLM_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_layers > 0 &&
                num_heads > 0 && num_kv_heads > 0 && head_dim > 0,
            source, ": vocab_size, hidden_size, intermediate_size, num_hidden_layers, "
            "num_attention_heads, num_key_value_heads and head_dim must all be positive");
  TLM_CHECK(num_heads % num_kv_heads == 0, source, ": num_attention_heads = ", num_heads,
            " is not a multiple of num_key_value_heads = ", num_kv_heads);
  TLM_CHECK(head_dim % 2 == 0, source, ": head_dim = ", head_dim, " must be even for rotary");
  TLM_CHECK(mlp_activation == "silu" || mlp_activation == "gelu_tanh", source, ": MLP activation '", mlp_activation,
            "' (silu or gelu_tanh)");
  TLM_CHECK(sliding_layers.empty() || static_cast<int64_t>(sliding_layers.size()) == num_layers, source, ": ",
            sliding_layers.size(), " layer kinds for ", num_layers, " layers");
}

std::string ModelConfig::summary() const {
  return str_cat(model_type, " L", num_layers, " H", hidden_size, " F", intermediate_size,
                 " heads ", num_heads, "/", num_kv_heads, " d", head_dim, " V", vocab_size,
                 " theta ", rope_theta, " rope ", rope_scaling.type, " x", rope_scaling.factor,
                 qkv_bias ? " qkv_bias" : "", qk_norm ? " qk_norm" : "", o_bias ? " o_bias" : "", mlp_bias ? " mlp_bias" : "",
                 tie_word_embeddings ? " tied" : "",
                 // Gemma 3's flags, only for models that have them (other fingerprints stay as they were).
                 sandwich_norms ? str_cat(" sandwich", norm_plus_one ? " norm+1" : "", " x", embedding_scale, " ", mlp_activation, " scale ",
                                          attention_scale.value_or(0.0), " window ", sliding_window.value_or(0),
                                          " local ", std::count(sliding_layers.begin(), sliding_layers.end(), true),
                                          "/", sliding_layers.size(), " local theta ", local_rope_theta)
                                : "");
}

}  // namespace tlm
