// A tiny random Llama-family model written at test time (config.json + model.safetensors)
// for the model, generate and learn unit tests. Weights are drawn from a seeded generator
// with unit-scale embeddings, so logits spread over several units and greedy choices are
// never near-ties that a change of batch layout could flip.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "engine/model/llama_model.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_source.h"

namespace tlm::test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct TinyLlamaSpec {
  std::string model_type = "llama";  // "llama", "mistral" or "qwen2"
  int64_t vocab_size = 48;
  int64_t hidden_size = 32;
  int64_t intermediate_size = 64;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;
  bool tie_word_embeddings = false;
  int64_t sliding_window = 0;  // > 0: Mistral's sliding-window attention
  uint64_t seed = 1234;
};

// The config.json text of the spec (transformers 5 style, rope_parameters).
std::string tiny_llama_config_json(const TinyLlamaSpec& spec);

// Every tensor of the model by its HF name, fp32, drawn from the spec's seed.
std::map<std::string, at::Tensor> tiny_llama_weights(const TinyLlamaSpec& spec);

// Writes `tensors` in their own dtype (fp32, bf16, fp16, f64; int32 / int64 for tests of
// the dtype check) as `directory`/model.safetensors.
void write_model_safetensors(const std::string& directory,
                             const std::map<std::string, at::Tensor>& tensors);

// Writes config.json and model.safetensors of the spec into `directory`.
void write_tiny_llama(const std::string& directory, const TinyLlamaSpec& spec);

// A tiny model on disk, loaded on the single-process communicator.
struct TinyLlama {
  std::unique_ptr<TempDir> dir;
  ModelConfig config;
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<LlamaModel> model;
};

TinyLlama load_tiny_llama(const TinyLlamaSpec& spec, at::ScalarType dtype,
                          c10::Device device = c10::Device(c10::kCPU));

// `count` random token sequences of lengths min_len + (i * 7) % 8 (varied, so batches pad),
// ids in [0, vocab), from `seed`.
std::vector<std::vector<int32_t>> random_token_sequences(int count, int64_t vocab, uint64_t seed,
                                                         int64_t min_len = 4);

// The message of the tlm::Error `fn` throws; "" when it throws nothing. Any other exception
// propagates, so a test expecting tlm::Error fails on a c10::Error or std::exception.
std::string error_of(const std::function<void()>& fn);

// "" when `message` contains every part, else what is missing (for EXPECT_EQ(..., "")).
std::string lacks(const std::string& message, std::initializer_list<std::string> parts);

}  // namespace tlm::test
