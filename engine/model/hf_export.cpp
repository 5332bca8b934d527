#include "engine/model/hf_export.h"

#include <cmath>
#include <map>

#include "engine/common/error.h"

namespace tlm {

namespace {

// The fields every Llama-family config.json has, and the token ids.
nlohmann::json shape_fields(const ModelConfig& c, const std::string& architecture) {
  nlohmann::json j = {{"architectures", {architecture}},
                      {"model_type", c.model_type},
                      {"vocab_size", c.vocab_size},
                      {"hidden_size", c.hidden_size},
                      {"intermediate_size", c.intermediate_size},
                      {"num_hidden_layers", c.num_layers},
                      {"num_attention_heads", c.num_heads},
                      {"num_key_value_heads", c.num_kv_heads},
                      {"head_dim", c.head_dim},
                      {"max_position_embeddings", c.max_position_embeddings},
                      {"rms_norm_eps", c.rms_norm_eps},
                      {"tie_word_embeddings", c.tie_word_embeddings},
                      {"dtype", "float32"}};
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_id) j["eos_token_id"] = *c.eos_token_id;
  return j;
}

// Gemma 3 (text): its own fields, rotary per layer kind (transformers 5's rope_parameters).
nlohmann::json gemma3_config_json(const ModelConfig& c) {
  nlohmann::json full = {{"rope_type", c.rope_scaling.type}, {"rope_theta", c.rope_theta}};
  if (c.rope_scaling.type != "default") full["factor"] = c.rope_scaling.factor;
  nlohmann::json layer_types = nlohmann::json::array();
  for (bool sliding : c.sliding_layers) layer_types.push_back(sliding ? "sliding_attention" : "full_attention");
  const double scale = c.attention_scale.value_or(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  nlohmann::json j = shape_fields(c, "Gemma3ForCausalLM");
  j.update({{"hidden_activation", "gelu_pytorch_tanh"},
            {"query_pre_attn_scalar", std::llround(1.0 / (scale * scale))},
            {"sliding_window", c.sliding_window.value_or(0)},
            {"layer_types", layer_types},
            {"rope_parameters",
             {{"full_attention", full},
              {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", c.local_rope_theta}}}}},
            {"attention_bias", c.qkv_bias},
            {"final_logit_softcapping", nullptr},
            {"attn_logit_softcapping", nullptr}});
  return j;
}

}  // namespace

nlohmann::json hf_config_json(const ModelConfig& c) {
  if (c.model_type == "gemma3_text") return gemma3_config_json(c);
  static const std::map<std::string, std::string> kClasses = {{"llama", "LlamaForCausalLM"},
                                                              {"mistral", "MistralForCausalLM"},
                                                              {"qwen2", "Qwen2ForCausalLM"},
                                                              {"qwen3", "Qwen3ForCausalLM"}};
  auto cls = kClasses.find(c.model_type);
  TLM_CHECK(cls != kClasses.end(), "hf_config_json: no transformers class for model_type '", c.model_type, "'");
  nlohmann::json rope = {{"rope_type", c.rope_scaling.type}, {"rope_theta", c.rope_theta}};
  if (c.rope_scaling.type != "default") rope["factor"] = c.rope_scaling.factor;
  if (c.rope_scaling.type == "llama3") {
    rope["low_freq_factor"] = c.rope_scaling.low_freq_factor;
    rope["high_freq_factor"] = c.rope_scaling.high_freq_factor;
    rope["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
  }
  nlohmann::json j = shape_fields(c, cls->second);
  j.update({{"hidden_act", "silu"}, {"rope_parameters", rope}});
  if (c.model_type == "llama" || c.model_type == "mistral") {
    j["attention_bias"] = c.qkv_bias;
    j["mlp_bias"] = c.mlp_bias;
  } else if (c.model_type == "qwen3") {
    j["attention_bias"] = c.qkv_bias;
  }
  if (c.sliding_window) {
    j["sliding_window"] = *c.sliding_window;
    if (c.model_type != "mistral") j["use_sliding_window"] = true;
  } else if (c.model_type == "mistral") {
    j["sliding_window"] = nullptr;
  }
  return j;
}

nlohmann::json hf_generation_config_json(const ModelConfig& c, const std::vector<int32_t>& eos_ids) {
  nlohmann::json j = {{"_from_model_config", false}};
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (eos_ids.size() == 1) j["eos_token_id"] = eos_ids[0];
  else if (!eos_ids.empty()) j["eos_token_id"] = eos_ids;
  return j;
}

std::vector<std::string> hf_tensor_names(const ModelConfig& c) {
  static const char* kLayer[] = {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
                                 "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
                                 "self_attn.v_proj.bias", "self_attn.o_proj.weight", "self_attn.o_proj.bias",
                                 "self_attn.q_norm.weight", "self_attn.k_norm.weight",
                                 "post_attention_layernorm.weight", "pre_feedforward_layernorm.weight",
                                 "post_feedforward_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                                 "mlp.down_proj.weight"};
  std::vector<std::string> names = {"model.embed_tokens.weight"};
  for (int64_t i = 0; i < c.num_layers; ++i)
    for (const char* s : kLayer) names.push_back("model.layers." + std::to_string(i) + "." + s);
  names.push_back("model.norm.weight");
  names.push_back("lm_head.weight");
  return names;
}

}  // namespace tlm
