// ModelConfig: HF config.json variants (transformers 5 rope_parameters and the older
// rope_theta + rope_scaling, qwen2, mistral, eos lists), GGUF metadata, and the errors that
// must name the file and the field.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"
#include "engine/model/model_config.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using nlohmann::json;
using test::error_of;
using test::lacks;
using test::TempDir;

json base_llama() {
  return json{{"model_type", "llama"},       {"vocab_size", 128},
              {"hidden_size", 64},           {"intermediate_size", 172},
              {"num_hidden_layers", 3},      {"num_attention_heads", 8},
              {"num_key_value_heads", 2},    {"max_position_embeddings", 4096},
              {"rms_norm_eps", 1e-5},        {"hidden_act", "silu"},
              {"tie_word_embeddings", true}, {"bos_token_id", 1},
              {"eos_token_id", 2}};
}

std::string write_config(const TempDir& dir, const std::string& text,
                         const std::string& name = "config.json") {
  const std::string path = dir.file(name);
  std::ofstream out(path);
  out << text;
  return path;
}

std::string write_config(const TempDir& dir, const json& j) { return write_config(dir, j.dump(2)); }

TEST(ModelConfigHf, LlamaTransformers5RopeParameters) {
  TempDir dir("config");
  json j = base_llama();
  j["rope_parameters"] = {{"rope_type", "llama3"},
                          {"rope_theta", 500000.0},
                          {"factor", 32.0},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  // A stale top-level rope_theta must lose to rope_parameters (transformers 5 reads the latter).
  j["rope_theta"] = 1234.0;
  ModelConfig c = ModelConfig::from_hf_json(write_config(dir, j));
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 128);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 8);  // hidden / heads when head_dim is absent
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
}

TEST(ModelConfigHf, LlamaDefaultRopeParameters) {
  TempDir dir("config");
  json j = base_llama();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 100000.0}};
  ModelConfig c = ModelConfig::from_hf_json(write_config(dir, j));
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 1.0);
}

TEST(ModelConfigHf, LlamaOlderRopeThetaAndScaling) {
  TempDir dir("config");
  json j = base_llama();
  j["rope_theta"] = 250000.0;
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  ModelConfig c = ModelConfig::from_hf_json(write_config(dir, j));
  EXPECT_DOUBLE_EQ(c.rope_theta, 250000.0);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);

  // No rope fields at all: theta 10000, no scaling; rope_scaling null is "none" too.
  json plain = base_llama();
  plain["rope_scaling"] = nullptr;
  ModelConfig p = ModelConfig::from_hf_json(write_config(dir, plain));
  EXPECT_DOUBLE_EQ(p.rope_theta, 10000.0);
  EXPECT_EQ(p.rope_scaling.type, "default");
}

TEST(ModelConfigHf, LlamaBiasesHeadDimAndKvDefault) {
  TempDir dir("config");
  json j = base_llama();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  j["head_dim"] = 16;  // Llama allows head_dim != hidden / heads
  j.erase("num_key_value_heads");
  ModelConfig c = ModelConfig::from_hf_json(write_config(dir, j));
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_TRUE(c.mlp_bias);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_kv_heads, 8);  // defaults to num_attention_heads (multi-head attention)
}

TEST(ModelConfigHf, Qwen2HasQkvBiasOnly) {
  TempDir dir("config");
  json j = base_llama();
  j["model_type"] = "qwen2";
  j["attention_bias"] = false;  // ignored: Qwen2 always has q/k/v biases
  j["use_sliding_window"] = false;
  j["sliding_window"] = 4096;
  j["tie_word_embeddings"] = false;
  ModelConfig c = ModelConfig::from_hf_json(write_config(dir, j));
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.sliding_window.has_value()) << "use_sliding_window false must disable it";

  j["use_sliding_window"] = true;
  ModelConfig s = ModelConfig::from_hf_json(write_config(dir, j));
  ASSERT_TRUE(s.sliding_window.has_value());
  EXPECT_EQ(*s.sliding_window, 4096);
}

TEST(ModelConfigHf, MistralSlidingWindow) {
  TempDir dir("config");
  json j = base_llama();
  j["model_type"] = "mistral";
  j["sliding_window"] = 4096;
  ModelConfig c = ModelConfig::from_hf_json(write_config(dir, j));
  EXPECT_EQ(c.model_type, "mistral");
  ASSERT_TRUE(c.sliding_window.has_value());
  EXPECT_EQ(*c.sliding_window, 4096);

  j["sliding_window"] = nullptr;  // Mistral v0.2+ configs disable it with null
  ModelConfig n = ModelConfig::from_hf_json(write_config(dir, j));
  EXPECT_FALSE(n.sliding_window.has_value());
}

TEST(ModelConfigHf, EosList) {
  TempDir dir("config");
  json j = base_llama();
  j["eos_token_id"] = {128001, 128008, 128009};
  j["bos_token_id"] = nullptr;
  ModelConfig c = ModelConfig::from_hf_json(write_config(dir, j));
  EXPECT_EQ(c.eos_token_id, 128001);  // the first one is the primary EOS
  EXPECT_FALSE(c.bos_token_id.has_value());

  j["eos_token_id"] = json::array({"</s>"});
  const std::string path = write_config(dir, j);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(path); }), {path, "'eos_token_id'"}), "");
  j["eos_token_id"] = json::array();
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, j)); }),
                  {path, "'eos_token_id'"}),
            "");
}

TEST(ModelConfigHf, SummaryIdentifiesTheArchitecture) {
  TempDir dir("config");
  json j = base_llama();
  const std::string a = ModelConfig::from_hf_json(write_config(dir, j)).summary();
  const std::string a2 = ModelConfig::from_hf_json(write_config(dir, j)).summary();
  EXPECT_EQ(a, a2);
  j["num_hidden_layers"] = 4;
  const std::string b = ModelConfig::from_hf_json(write_config(dir, j)).summary();
  EXPECT_NE(a, b);
  j["num_hidden_layers"] = 3;
  j["rope_theta"] = 500000.0;
  EXPECT_NE(a, ModelConfig::from_hf_json(write_config(dir, j)).summary());
}

TEST(ModelConfigHfErrors, MissingField) {
  TempDir dir("config");
  json j = base_llama();
  j.erase("hidden_size");
  const std::string path = write_config(dir, j);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(path); }),
                  {path, "'hidden_size'", "missing"}),
            "");
  j = base_llama();
  j["intermediate_size"] = nullptr;  // null counts as missing
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, j)); }),
                  {path, "'intermediate_size'", "missing"}),
            "");
}

TEST(ModelConfigHfErrors, WrongType) {
  TempDir dir("config");
  json j = base_llama();
  j["num_attention_heads"] = "eight";
  const std::string path = write_config(dir, j);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(path); }),
                  {path, "'num_attention_heads'", "wrong type", "string"}),
            "");
  j = base_llama();
  j["tie_word_embeddings"] = 3.5;
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, j)); }),
                  {path, "'tie_word_embeddings'", "wrong type"}),
            "");
  // A float where an integer belongs: nlohmann would cast it (4.5 read as 4; 1e40 undefined
  // behaviour); it is refused instead.
  for (const double bad : {4.5, 1e40}) {
    j = base_llama();
    j["num_attention_heads"] = bad;
    EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, j)); }),
                    {path, "'num_attention_heads'", "wrong type", "an integer is expected"}),
              "");
  }
}

TEST(ModelConfigHfErrors, UnsupportedModelType) {
  TempDir dir("config");
  json j = base_llama();
  j["model_type"] = "gpt_neox";
  const std::string path = write_config(dir, j);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(path); }),
                  {path, "model_type 'gpt_neox'", "llama, mistral, qwen2"}),
            "");
  j.erase("model_type");
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, j)); }),
                  {path, "'model_type'", "missing"}),
            "");
}

TEST(ModelConfigHfErrors, UnknownRopeType) {
  TempDir dir("config");
  json j = base_llama();
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  const std::string path = write_config(dir, j);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(path); }),
                  {path, "'rope_parameters'", "'yarn'"}),
            "");
  json old = base_llama();
  old["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, old)); }),
                  {path, "'rope_scaling'", "'dynamic'"}),
            "");
  // A known type with a missing parameter names that parameter.
  json partial = base_llama();
  partial["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0}};
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, partial)); }),
                  {path, "'original_max_position_embeddings'", "missing"}),
            "");
}

TEST(ModelConfigHfErrors, HeadsNotDividing) {
  TempDir dir("config");
  json j = base_llama();
  j["num_attention_heads"] = 6;
  j["num_key_value_heads"] = 4;
  j["head_dim"] = 8;
  const std::string path = write_config(dir, j);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(path); }),
                  {path, "num_attention_heads = 6", "num_key_value_heads = 4"}),
            "");
  j = base_llama();
  j["head_dim"] = 7;  // odd: rotate-half needs pairs
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, j)); }),
                  {path, "head_dim = 7"}),
            "");
  j = base_llama();
  j["vocab_size"] = 0;
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(write_config(dir, j)); }),
                  {path, "vocab_size"}),
            "");
}

TEST(ModelConfigHfErrors, InvalidJsonAndMissingFile) {
  TempDir dir("config");
  const std::string path = write_config(dir, std::string("{\"model_type\": \"llama\", \"vocab_size\": }"));
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(path); }), {path, "not valid JSON"}), "");
  const std::string arr = write_config(dir, std::string("[1, 2]"), "array.json");
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(arr); }), {arr, "JSON object"}), "");
  const std::string missing = dir.file("nope.json");
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(missing); }), {missing, "cannot open"}), "");
}

TEST(ModelConfigHfErrors, UnsupportedActivation) {
  TempDir dir("config");
  json j = base_llama();
  j["hidden_act"] = "gelu";
  const std::string path = write_config(dir, j);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_hf_json(path); }), {path, "'hidden_act'", "gelu"}),
            "");
}

// --- GGUF metadata: a header-only GGUF (plus one tiny F32 tensor) written byte by byte.

struct GgufKv {
  std::vector<uint8_t> bytes;
  uint64_t count = 0;
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void str(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  }
  // GGUF value types: 4 uint32, 6 float32, 8 string, 9 array.
  void key_u32(const std::string& k, uint32_t v) { str(k); u32(4); u32(v); ++count; }
  void key_f32(const std::string& k, float v) { str(k); u32(6); f32(v); ++count; }
  void key_str(const std::string& k, const std::string& v) { str(k); u32(8); str(v); ++count; }
  void key_str_array(const std::string& k, const std::vector<std::string>& v) {
    str(k); u32(9); u32(8); u64(v.size());
    for (const auto& s : v) str(s);
    ++count;
  }
};

// GGUF v3 with the given metadata and, optionally, one F32 tensor of 4 elements.
// Each call writes a new file name: a GgufFile keeps its file mapped.
std::string write_gguf(const TempDir& dir, const std::string& name, const GgufKv& kv,
                       const std::string& tensor_name) {
  GgufKv out;
  out.raw("GGUF", 4);
  out.u32(3);
  out.u64(tensor_name.empty() ? 0 : 1);
  out.u64(kv.count);
  out.raw(kv.bytes.data(), kv.bytes.size());
  if (!tensor_name.empty()) {
    out.str(tensor_name);
    out.u32(1);   // n_dims
    out.u64(4);   // ne[0]
    out.u32(0);   // F32
    out.u64(0);   // offset in the data section
  }
  while (out.bytes.size() % 32 != 0) out.bytes.push_back(0);
  if (!tensor_name.empty()) {
    for (int i = 0; i < 4; ++i) out.f32(0.5f * static_cast<float>(i));
  }
  const std::string path = dir.file(name);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(out.bytes.data()), static_cast<std::streamsize>(out.bytes.size()));
  return path;
}

GgufKv llama_gguf_metadata(const std::string& arch) {
  GgufKv kv;
  kv.key_str("general.architecture", arch);
  kv.key_u32(arch + ".embedding_length", 64);
  kv.key_u32(arch + ".feed_forward_length", 128);
  kv.key_u32(arch + ".block_count", 2);
  kv.key_u32(arch + ".attention.head_count", 8);
  kv.key_u32(arch + ".attention.head_count_kv", 4);
  kv.key_u32(arch + ".context_length", 2048);
  kv.key_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
  kv.key_f32(arch + ".rope.freq_base", 100000.0f);
  kv.key_str_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "b", "c"});
  kv.key_u32("tokenizer.ggml.bos_token_id", 1);
  kv.key_u32("tokenizer.ggml.eos_token_id", 2);
  return kv;
}

TEST(ModelConfigGguf, LlamaMetadata) {
  TempDir dir("config");
  GgufFile gguf(write_gguf(dir, "llama.gguf", llama_gguf_metadata("llama"), ""));
  ModelConfig c = ModelConfig::from_gguf(gguf);
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_NEAR(c.rms_norm_eps, 1e-5, 1e-12);  // stored as float32
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  EXPECT_EQ(c.vocab_size, 6);  // from the token list when <arch>.vocab_size is absent
  EXPECT_TRUE(c.tie_word_embeddings);  // no output.weight
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
}

TEST(ModelConfigGguf, Qwen2BiasFromTensorAndLinearScaling) {
  TempDir dir("config");
  GgufKv kv = llama_gguf_metadata("qwen2");
  kv.key_u32("qwen2.vocab_size", 6);
  kv.key_str("qwen2.rope.scaling.type", "linear");
  kv.key_f32("qwen2.rope.scaling.factor", 4.0f);
  GgufFile gguf(write_gguf(dir, "qwen2.gguf", kv, "blk.0.attn_q.bias"));
  ModelConfig c = ModelConfig::from_gguf(gguf);
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
}

TEST(ModelConfigGguf, Errors) {
  TempDir dir("config");
  GgufKv neox;
  neox.key_str("general.architecture", "gptneox");
  const std::string p1 = write_gguf(dir, "neox.gguf", neox, "");
  GgufFile g1(p1);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_gguf(g1); }), {p1, "'gptneox'"}), "");

  GgufKv yarn = llama_gguf_metadata("llama");
  yarn.key_str("llama.rope.scaling.type", "yarn");
  const std::string p2 = write_gguf(dir, "yarn.gguf", yarn, "");
  GgufFile g2(p2);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_gguf(g2); }), {p2, "llama.rope.scaling.type 'yarn'"}),
            "");

  GgufKv missing;  // no embedding_length
  missing.key_str("general.architecture", "llama");
  const std::string p3 = write_gguf(dir, "missing.gguf", missing, "");
  GgufFile g3(p3);
  EXPECT_EQ(lacks(error_of([&] { ModelConfig::from_gguf(g3); }), {p3, "llama.embedding_length"}),
            "");
}

}  // namespace
}  // namespace tlm
