#include "tests/engine/model/tiny_llama.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "dist/communicator.h"
#include "engine/common/error.h"
#include "engine/formats/safetensors_writer.h"

namespace tlm::test {

TempDir::TempDir(const std::string& tag) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/tlm-" + tag + "-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + templ);
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string tiny_llama_config_json(const TinyLlamaSpec& s) {
  nlohmann::json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", s.model_type},
      {"vocab_size", s.vocab_size},
      {"hidden_size", s.hidden_size},
      {"intermediate_size", s.intermediate_size},
      {"num_hidden_layers", s.num_layers},
      {"num_attention_heads", s.num_heads},
      {"num_key_value_heads", s.num_kv_heads},
      {"max_position_embeddings", 256},
      {"rms_norm_eps", 1e-6},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", s.tie_word_embeddings},
      {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
      {"bos_token_id", 1},
      {"eos_token_id", 2}};
  if (s.sliding_window > 0) j["sliding_window"] = s.sliding_window;
  return j.dump(2);
}

std::map<std::string, at::Tensor> tiny_llama_weights(const TinyLlamaSpec& s) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(s.seed);
  auto normal = [&](std::vector<int64_t> shape, double std) {
    return at::empty(shape, at::kFloat).normal_(0.0, std, gen);
  };
  auto norm_weight = [&](int64_t n) { return normal({n}, 0.1).add_(1.0); };
  const int64_t H = s.hidden_size, F = s.intermediate_size;
  const int64_t D = H / s.num_heads;
  const int64_t q_out = s.num_heads * D, kv_out = s.num_kv_heads * D;
  const double in_h = 1.0 / std::sqrt(static_cast<double>(H));
  std::map<std::string, at::Tensor> w;
  w["model.embed_tokens.weight"] = normal({s.vocab_size, H}, 1.0);
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w[p + "input_layernorm.weight"] = norm_weight(H);
    w[p + "post_attention_layernorm.weight"] = norm_weight(H);
    w[p + "self_attn.q_proj.weight"] = normal({q_out, H}, in_h);
    w[p + "self_attn.k_proj.weight"] = normal({kv_out, H}, in_h);
    w[p + "self_attn.v_proj.weight"] = normal({kv_out, H}, in_h);
    w[p + "self_attn.o_proj.weight"] = normal({H, q_out}, 1.0 / std::sqrt(static_cast<double>(q_out)));
    if (s.model_type == "qwen2") {
      w[p + "self_attn.q_proj.bias"] = normal({q_out}, 0.1);
      w[p + "self_attn.k_proj.bias"] = normal({kv_out}, 0.1);
      w[p + "self_attn.v_proj.bias"] = normal({kv_out}, 0.1);
    }
    w[p + "mlp.gate_proj.weight"] = normal({F, H}, in_h);
    w[p + "mlp.up_proj.weight"] = normal({F, H}, in_h);
    w[p + "mlp.down_proj.weight"] = normal({H, F}, 1.0 / std::sqrt(static_cast<double>(F)));
  }
  w["model.norm.weight"] = norm_weight(H);
  if (!s.tie_word_embeddings) w["lm_head.weight"] = normal({s.vocab_size, H}, 0.5);
  return w;
}

void write_model_safetensors(const std::string& directory,
                             const std::map<std::string, at::Tensor>& tensors) {
  std::vector<at::Tensor> keep;
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, tensor] : tensors) {
    at::Tensor t = tensor.detach().contiguous();
    StDtype dtype = StDtype::F32;
    switch (t.scalar_type()) {
      case at::kFloat: dtype = StDtype::F32; break;
      case at::kBFloat16: dtype = StDtype::BF16; break;
      case at::kHalf: dtype = StDtype::F16; break;
      case at::kDouble: dtype = StDtype::F64; break;
      case at::kInt: dtype = StDtype::I32; break;
      case at::kLong: dtype = StDtype::I64; break;
      default: throw std::runtime_error("write_model_safetensors: unsupported dtype for " + name);
    }
    keep.push_back(t);
    entries.push_back({name, dtype, t.sizes().vec(), t.data_ptr()});
  }
  write_safetensors(directory + "/model.safetensors", entries, {{"format", "pt"}});
}

void write_tiny_llama(const std::string& directory, const TinyLlamaSpec& spec) {
  std::ofstream out(directory + "/config.json");
  out << tiny_llama_config_json(spec) << "\n";
  out.close();
  if (!out) throw std::runtime_error("cannot write " + directory + "/config.json");
  write_model_safetensors(directory, tiny_llama_weights(spec));
}

TinyLlama load_tiny_llama(const TinyLlamaSpec& spec, at::ScalarType dtype, c10::Device device) {
  TinyLlama t;
  t.dir = std::make_unique<TempDir>("tiny-llama");
  write_tiny_llama(t.dir->path(), spec);
  t.config = ModelConfig::from_hf_json(t.dir->file("config.json"));
  t.weights = open_safetensors_weights(t.dir->path());
  t.model = std::make_unique<LlamaModel>(t.config, *t.weights, make_single_process_communicator(),
                                         dtype, device);
  return t;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const tlm::Error& e) {
    return e.what();
  }
  return "";
}

std::string lacks(const std::string& message, std::initializer_list<std::string> parts) {
  if (message.empty()) return "no tlm::Error was thrown";
  for (const std::string& part : parts)
    if (message.find(part) == std::string::npos) return "message lacks \"" + part + "\": " + message;
  return "";
}

std::vector<std::vector<int32_t>> random_token_sequences(int count, int64_t vocab, uint64_t seed,
                                                         int64_t min_len) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < count; ++i) {
    const int64_t len = min_len + (i * 7) % 8;
    at::Tensor ids = at::randint(vocab, {len}, gen, at::kLong).to(at::kInt).contiguous();
    out.emplace_back(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + len);
  }
  return out;
}

}  // namespace tlm::test
