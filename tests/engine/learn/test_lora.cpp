// LoraAdapters on a tiny random model written by the test: which projections get adapters,
// PEFT's initialisation (A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0) drawn from the seed, what
// requires gradients, state round trips, enable / merge, and configuration errors.
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "engine/learn/lora.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::error_of;
using test::lacks;

std::string short_name(const std::string& module) { return module.substr(module.rfind('.') + 1); }

at::Tensor logits_of(const LlamaModel& model) {
  c10::InferenceMode guard;
  at::Tensor ids = at::tensor({3, 17, 5, 40, 22, 9, 1, 30}, at::kLong).view({2, 4});
  return model.logits(ids, at::ones({2, 4}, at::kLong));
}

TEST(LoraAdapters, OnlyTargetedProjections) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraConfig c;
  c.targets = {"q_proj", "v_proj", "down_proj"};
  c.rank = 4;
  c.alpha = 8.0;
  LoraAdapters lora(*t.model, c);
  ASSERT_EQ(lora.modules().size(), 6u);  // 2 layers x 3 targets
  std::set<std::string> with_adapter;
  for (const Projection& p : lora.modules()) with_adapter.insert(p.name);
  for (const Projection& p : t.model->projections()) {
    const bool targeted = short_name(p.name) == "q_proj" || short_name(p.name) == "v_proj" ||
                          short_name(p.name) == "down_proj";
    EXPECT_EQ(p.lora() != nullptr, targeted) << p.name;
    EXPECT_EQ(with_adapter.count(p.name) == 1, targeted) << p.name;
    if (targeted) {
      EXPECT_DOUBLE_EQ(p.lora()->scale, 2.0) << p.name;  // alpha / rank
    }
  }
  EXPECT_EQ(lora.modules()[0].name, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(lora.modules()[2].name, "model.layers.0.mlp.down_proj");
  std::vector<std::string> names = lora.parameter_names();
  ASSERT_EQ(names.size(), 12u);
  EXPECT_EQ(names[0], "model.layers.0.self_attn.q_proj.lora_A");
  EXPECT_EQ(names[1], "model.layers.0.self_attn.q_proj.lora_B");
  EXPECT_EQ(names[11], "model.layers.1.mlp.down_proj.lora_B");
}

TEST(LoraAdapters, PeftInitialisation) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  const at::Tensor base = logits_of(*t.model);
  LoraConfig c;
  c.targets = lora_target_names();
  c.rank = 8;
  LoraAdapters lora(*t.model, c);
  ASSERT_EQ(lora.modules().size(), 14u);
  for (const Projection& p : lora.modules()) {
    const LoraSlot& s = *p.lora();
    const double bound = 1.0 / std::sqrt(static_cast<double>(p.in_features()));
    ASSERT_EQ(s.A.sizes(), at::IntArrayRef({8, p.in_features()})) << p.name;
    ASSERT_EQ(s.B.sizes(), at::IntArrayRef({p.out_features(), 8})) << p.name;
    EXPECT_EQ(s.A.scalar_type(), at::kFloat);
    const double max_abs = s.A.abs().max().item<double>();
    EXPECT_LE(max_abs, bound) << p.name;
    // 256+ uniform draws: the largest is close to the bound and the mean near 0.
    EXPECT_GT(max_abs, 0.9 * bound) << p.name;
    EXPECT_LT(std::abs(s.A.mean().item<double>()), 0.2 * bound) << p.name;
    EXPECT_TRUE(at::equal(s.B, at::zeros_like(s.B))) << p.name;
  }
  // B = 0: a fresh adapter does not change the model.
  EXPECT_TRUE(at::equal(logits_of(*t.model), base));
}

TEST(LoraAdapters, SeedDeterminesA) {
  LoraConfig c;
  c.targets = {"q_proj", "up_proj"};
  test::TinyLlama t1 = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  test::TinyLlama t2 = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  test::TinyLlama t3 = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  at::manual_seed(123);  // the global generator plays no part
  LoraAdapters a(*t1.model, c);
  at::manual_seed(456);
  LoraAdapters b(*t2.model, c);
  c.seed = 43;
  LoraAdapters other(*t3.model, c);
  auto sa = a.full_state(), sb = b.full_state(), so = other.full_state();
  ASSERT_EQ(sa.size(), 8u);
  for (const auto& [name, tensor] : sa) {
    EXPECT_TRUE(at::equal(tensor, sb.at(name))) << name;
    if (name.size() > 6 && name.compare(name.size() - 6, 6, "lora_A") == 0) {
      EXPECT_FALSE(at::equal(tensor, so.at(name))) << name;
    }
  }
  // Different modules get different draws from the one generator.
  EXPECT_FALSE(at::equal(sa.at("model.layers.0.self_attn.q_proj.lora_A"),
                         sa.at("model.layers.1.self_attn.q_proj.lora_A")));
}

TEST(LoraAdapters, OnlyAdapterTensorsRequireGrad) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraConfig c;
  c.targets = {"k_proj", "o_proj", "gate_proj"};
  LoraAdapters lora(*t.model, c);
  std::vector<at::Tensor> params = lora.parameters();
  ASSERT_EQ(params.size(), 12u);
  for (const at::Tensor& p : params) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
  }
  for (const Projection& p : t.model->projections()) {
    const at::Tensor& w = p.column ? p.column->weight() : p.row->weight();
    EXPECT_FALSE(w.requires_grad()) << p.name;
  }
  // The gradient of a model output reaches exactly the adapter tensors.
  at::Tensor ids = at::tensor({3, 17, 5, 40}, at::kLong).view({1, 4});
  at::Tensor logp = t.model->token_log_likelihoods(ids, at::ones({1, 4}, at::kLong));
  ASSERT_TRUE(logp.requires_grad());
  logp.sum().backward();
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_TRUE(params[i].grad().defined()) << lora.parameter_names()[i];
    // A's gradient is zero while B = 0; B's is not.
    if (i % 2 == 1) {
      EXPECT_GT(params[i].grad().abs().sum().item<double>(), 0.0) << lora.parameter_names()[i];
    }
  }
}

TEST(LoraAdapters, StateRoundTripEnableAndMerge) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  const at::Tensor base = logits_of(*t.model);
  LoraConfig c;
  c.targets = {"q_proj", "v_proj", "o_proj", "down_proj"};
  c.rank = 2;
  LoraAdapters lora(*t.model, c);
  // Give every B a value so the adapters change the output.
  std::map<std::string, at::Tensor> state = lora.full_state();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  for (auto& [name, tensor] : state)
    if (name.compare(name.size() - 6, 6, "lora_B") == 0) tensor.normal_(0.0, 0.2, gen);
  lora.load_full_state(state, "test state");
  for (const auto& [name, tensor] : lora.full_state()) EXPECT_TRUE(at::equal(tensor, state.at(name))) << name;
  for (const at::Tensor& p : lora.parameters()) EXPECT_TRUE(p.requires_grad());

  const at::Tensor adapted = logits_of(*t.model);
  EXPECT_GT((adapted - base).abs().max().item<double>(), 1e-3);

  lora.set_enabled(false);
  EXPECT_TRUE(at::equal(logits_of(*t.model), base));
  lora.set_enabled(true);
  EXPECT_TRUE(at::equal(logits_of(*t.model), adapted));

  // Merged weights give the adapted output (float32 rounding of W + s B A: 1e-4 on logits
  // of a few units); unmerging gives it back through the branch.
  lora.merge();
  EXPECT_LT((logits_of(*t.model) - adapted).abs().max().item<double>(), 1e-4);
  lora.unmerge();
  EXPECT_LT((logits_of(*t.model) - adapted).abs().max().item<double>(), 1e-5);

  lora.set_training(true);
  for (const Projection& p : lora.modules()) EXPECT_TRUE(p.lora()->training);
  lora.set_training(false);
  for (const Projection& p : lora.modules()) EXPECT_FALSE(p.lora()->training);
}

// A server decodes rows of different adapters in one batch: each row of a per-row forward
// equals that row alone under its own adapter (or none). The products are batched over rows
// (bmm instead of linear), which may reorder float sums: tolerance 1e-5 on logits of a few units.
TEST(LoraAdapters, PerRowStatesEqualEachRowAlone) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraConfig c;
  c.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  c.rank = 2;
  LoraAdapters lora(*t.model, c);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  auto random_state = [&] {
    std::vector<at::Tensor> out;
    for (const at::Tensor& p : lora.parameters()) out.push_back(at::empty_like(p).normal_(0.0, 0.2, gen).detach());
    return std::make_shared<const std::vector<at::Tensor>>(out);
  };
  const std::vector<StateSnapshot> rows = {random_state(), nullptr, random_state()};
  const at::Tensor ids = at::tensor({3, 17, 5, 40, 22, 9, 1, 30, 8, 8, 2, 19}, at::kLong).view({3, 4});
  c10::InferenceMode guard;
  lora.use_row_states(rows);
  const at::Tensor together = t.model->logits(ids, at::ones({3, 4}, at::kLong));
  const at::Tensor stacked = lora.modules()[0].lora()->rows_A;
  lora.use_row_states(rows);  // the same rows again: the same stacks, not new ones
  EXPECT_TRUE(lora.modules()[0].lora()->rows_A.is_same(stacked));
  lora.clear_row_states();
  for (int64_t i = 0; i < 3; ++i) {
    lora.set_enabled(rows[i] != nullptr);
    if (rows[i])
      for (size_t k = 0; k < rows[i]->size(); ++k) lora.parameters()[k].copy_((*rows[i])[k]);
    const at::Tensor alone = t.model->logits(ids.narrow(0, i, 1), at::ones({1, 4}, at::kLong));
    EXPECT_LT((together.narrow(0, i, 1) - alone).abs().max().item<double>(), 1e-5) << "row " << i;
  }
  lora.set_enabled(false);
  const at::Tensor base0 = t.model->logits(ids.narrow(0, 0, 1), at::ones({1, 4}, at::kLong));
  lora.set_enabled(true);
  EXPECT_GT((together.narrow(0, 0, 1) - base0).abs().max().item<double>(), 1e-3) << "row 0's adapter changes nothing";
}

TEST(LoraAdapters, LoadStateErrors) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraConfig c;
  c.targets = {"q_proj"};
  c.rank = 4;
  LoraAdapters lora(*t.model, c);
  std::map<std::string, at::Tensor> state = lora.full_state();
  const std::string q0 = "model.layers.0.self_attn.q_proj";
  state[q0 + ".lora_A"] = at::zeros({2, 32});
  EXPECT_EQ(lacks(error_of([&] { lora.load_full_state(state, "adapter_dir"); }),
                  {"adapter_dir", "'" + q0 + ".lora_A'", "[2, 32]", "[4, 32]"}),
            "");
  state = lora.full_state();
  state.erase("model.layers.1.self_attn.q_proj.lora_B");
  EXPECT_EQ(lacks(error_of([&] { lora.load_full_state(state, "adapter_dir"); }),
                  {"adapter_dir", "'model.layers.1.self_attn.q_proj.lora_B'"}),
            "");
}

TEST(LoraAdapters, ConfigErrors) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraConfig c;
  c.targets = {"q_proj", "qkv_proj"};
  EXPECT_EQ(lacks(error_of([&] { LoraAdapters l(*t.model, c); }), {"'qkv_proj'", "q_proj, k_proj"}), "");
  c.targets = {};
  EXPECT_NE(error_of([&] { LoraAdapters l(*t.model, c); }), "");
  c.targets = {"q_proj"};
  c.rank = 0;
  EXPECT_EQ(lacks(error_of([&] { LoraAdapters l(*t.model, c); }), {"rank"}), "");
  c.rank = 8;
  c.dropout = 1.0;
  EXPECT_EQ(lacks(error_of([&] { LoraAdapters l(*t.model, c); }), {"dropout"}), "");
  EXPECT_EQ(lora_target_names().size(), 7u);
}

}  // namespace
}  // namespace tlm
