// PEFT adapter directories: save then load gives back the names, shapes, values and LoRA
// configuration; the files have PEFT's names; malformed directories fail naming the file.
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/formats/safetensors_file.h"
#include "engine/learn/lora.h"
#include "engine/learn/peft_adapter.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::error_of;
using test::lacks;
using test::TempDir;

std::map<std::string, at::Tensor> sample_state() {
  at::manual_seed(3);
  return {{"model.layers.0.self_attn.q_proj.lora_A", at::randn({4, 32})},
          {"model.layers.0.self_attn.q_proj.lora_B", at::randn({32, 4})},
          {"model.layers.1.mlp.down_proj.lora_A", at::randn({4, 64})},
          {"model.layers.1.mlp.down_proj.lora_B", at::randn({32, 4})}};
}

LoraConfig sample_config() {
  LoraConfig c;
  c.targets = {"q_proj", "down_proj"};
  c.rank = 4;
  c.alpha = 12.0;
  c.dropout = 0.05;
  return c;
}

TEST(PeftAdapter, SaveLoadRoundTrip) {
  TempDir dir("peft");
  const std::string out = dir.file("adapter");  // created by save
  const auto state = sample_state();
  save_peft_adapter(out, state, sample_config(), "HuggingFaceTB/SmolLM2-135M-Instruct");
  PeftAdapter a = load_peft_adapter(out);
  ASSERT_EQ(a.state.size(), state.size());
  for (const auto& [name, tensor] : state) {
    ASSERT_EQ(a.state.count(name), 1u) << name;
    EXPECT_EQ(a.state.at(name).scalar_type(), at::kFloat) << name;
    EXPECT_EQ(a.state.at(name).sizes(), tensor.sizes()) << name;
    EXPECT_TRUE(at::equal(a.state.at(name), tensor)) << name;
  }
  EXPECT_EQ(a.config.rank, 4);
  EXPECT_DOUBLE_EQ(a.config.alpha, 12.0);
  EXPECT_DOUBLE_EQ(a.config.dropout, 0.05);
  EXPECT_EQ(a.config.targets, (std::vector<std::string>{"q_proj", "down_proj"}));
  EXPECT_DOUBLE_EQ(a.config.scale(), 3.0);
}

TEST(PeftAdapter, FilesUsePeftNames) {
  TempDir dir("peft");
  save_peft_adapter(dir.path(), sample_state(), sample_config(), "base/model");
  SafetensorsFile st(dir.file("adapter_model.safetensors"));
  ASSERT_NE(st.find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), nullptr);
  ASSERT_NE(st.find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"), nullptr);
  EXPECT_EQ(st.find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")->dtype, StDtype::F32);
  EXPECT_EQ(st.metadata().at("format"), "pt");

  std::ifstream in(dir.file("adapter_config.json"));
  nlohmann::json cfg = nlohmann::json::parse(in);
  EXPECT_EQ(cfg.at("peft_type"), "LORA");
  EXPECT_EQ(cfg.at("task_type"), "CAUSAL_LM");
  EXPECT_EQ(cfg.at("r"), 4);
  EXPECT_EQ(cfg.at("lora_alpha"), 12.0);
  EXPECT_EQ(cfg.at("target_modules"), nlohmann::json({"q_proj", "down_proj"}));
  EXPECT_EQ(cfg.at("base_model_name_or_path"), "base/model");
  EXPECT_EQ(cfg.at("bias"), "none");
}

TEST(PeftAdapter, HalfPrecisionTensorsLoadAsFp32) {
  TempDir dir("peft");
  save_peft_adapter(dir.path(), sample_state(), sample_config(), "base");
  // Rewrite the tensors as bf16, as PEFT does for a bf16 model.
  auto state = sample_state();
  std::map<std::string, at::Tensor> bf16;
  for (const auto& [name, t] : state) bf16["base_model.model." + name + ".weight"] = t.to(at::kBFloat16);
  std::filesystem::remove(dir.file("adapter_model.safetensors"));
  test::write_model_safetensors(dir.path(), bf16);
  std::filesystem::rename(dir.file("model.safetensors"), dir.file("adapter_model.safetensors"));
  PeftAdapter a = load_peft_adapter(dir.path());
  for (const auto& [name, t] : state) {
    EXPECT_EQ(a.state.at(name).scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(a.state.at(name), t.to(at::kBFloat16).to(at::kFloat))) << name;
  }
}

TEST(PeftAdapter, RoundTripThroughAModel) {
  // Adapters trained on one model, saved, and loaded into a fresh copy give the same output.
  test::TinyLlama t1 = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  test::TinyLlama t2 = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraConfig c = sample_config();
  c.dropout = 0.0;
  LoraAdapters l1(*t1.model, c);
  auto state = l1.full_state();
  for (auto& [name, tensor] : state) tensor.normal_(0.0, 0.1);
  l1.load_full_state(state, "test");
  TempDir dir("peft");
  save_peft_adapter(dir.path(), l1.full_state(), c, "tiny");
  PeftAdapter loaded = load_peft_adapter(dir.path());
  loaded.config.seed = 1;  // a different initialisation, overwritten by the load
  LoraAdapters l2(*t2.model, loaded.config);
  l2.load_full_state(loaded.state, dir.path());
  c10::InferenceMode guard;
  at::Tensor ids = at::tensor({3, 17, 5, 40, 22}, at::kLong).view({1, 5});
  at::Tensor mask = at::ones({1, 5}, at::kLong);
  EXPECT_TRUE(at::equal(t1.model->logits(ids, mask), t2.model->logits(ids, mask)));
}

TEST(PeftAdapter, Errors) {
  TempDir dir("peft");
  const std::string cfg = dir.file("adapter_config.json");
  EXPECT_EQ(lacks(error_of([&] { load_peft_adapter(dir.path()); }), {cfg, "cannot open"}), "");

  save_peft_adapter(dir.path(), sample_state(), sample_config(), "base");
  auto rewrite = [&](const std::function<void(nlohmann::json&)>& edit) {
    std::ifstream in(cfg);
    nlohmann::json j = nlohmann::json::parse(in);
    in.close();
    edit(j);
    std::ofstream(cfg) << j.dump();
  };
  rewrite([](nlohmann::json& j) { j["peft_type"] = "IA3"; });
  EXPECT_EQ(lacks(error_of([&] { load_peft_adapter(dir.path()); }), {cfg, "'peft_type'"}), "");
  rewrite([](nlohmann::json& j) {
    j["peft_type"] = "LORA";
    j.erase("r");
  });
  EXPECT_EQ(lacks(error_of([&] { load_peft_adapter(dir.path()); }), {cfg, "missing or mistyped"}), "");
  rewrite([](nlohmann::json& j) {
    j["r"] = 4;
    j["target_modules"] = "q_proj";  // PEFT allows a single string (a regex)
  });
  EXPECT_EQ(load_peft_adapter(dir.path()).config.targets, (std::vector<std::string>{"q_proj"}));
  // Numbers out of range name the field. fuzz.peft_adapter found "r": 8.9e37 (a float), whose
  // conversion to an integer was undefined behaviour; its reproducer is in the fuzz seeds.
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::vector<std::string>>> bad_numbers = {
      {[](nlohmann::json& j) { j["r"] = 8.888888888888889e37; }, {"'r'", "must be an integer", "8.88"}},
      {[](nlohmann::json& j) { j["r"] = 4.5; }, {"'r'", "must be an integer"}},
      {[](nlohmann::json& j) { j["r"] = 18446744073709551615u; }, {"'r'", "[1, 65536]"}},
      {[](nlohmann::json& j) { j["r"] = 0; }, {"'r'", "[1, 65536]"}},
      {[](nlohmann::json& j) { j["r"] = 4; j["lora_alpha"] = -1; }, {"'lora_alpha'", "(0, inf)"}},
      {[](nlohmann::json& j) { j["lora_alpha"] = "16"; }, {"'lora_alpha'", "must be a number"}},
      {[](nlohmann::json& j) { j["lora_alpha"] = 16; j["lora_dropout"] = 1.5; }, {"'lora_dropout'", "[0, 1)"}},
  };
  for (const auto& [edit, expect] : bad_numbers) {
    rewrite(edit);
    const std::string message = error_of([&] { load_peft_adapter(dir.path()); });
    EXPECT_EQ(lacks(message, {cfg}), "");
    for (const std::string& part : expect) EXPECT_EQ(lacks(message, {part}), "");
  }
  rewrite([](nlohmann::json& j) { j["lora_dropout"] = 0.1; });
  EXPECT_EQ(load_peft_adapter(dir.path()).config.rank, 4);
  std::ofstream(cfg) << "{ not json";
  EXPECT_EQ(lacks(error_of([&] { load_peft_adapter(dir.path()); }), {cfg, "not valid JSON"}), "");

  // A tensor that is not a PEFT LoRA weight name.
  TempDir bad("peft");
  save_peft_adapter(bad.path(), sample_state(), sample_config(), "base");
  std::filesystem::remove(bad.file("adapter_model.safetensors"));
  test::write_model_safetensors(bad.path(), {{"lm_head.weight", at::zeros({2, 2})}});
  std::filesystem::rename(bad.file("model.safetensors"), bad.file("adapter_model.safetensors"));
  EXPECT_EQ(lacks(error_of([&] { load_peft_adapter(bad.path()); }),
                  {bad.file("adapter_model.safetensors"), "'lm_head.weight'"}),
            "");
}

}  // namespace
}  // namespace tlm
