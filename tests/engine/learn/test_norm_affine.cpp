// NormAffine on a tiny random model written by the test: a trainable fp32 copy of each
// targeted RMSNorm weight, equal to the base so the model's output is bitwise unchanged;
// only those copies require gradients and receive them; adapters off is the base model;
// state round trips through full_state; bad targets and shapes are refused by name.
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "engine/learn/norm_affine.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::error_of;
using test::lacks;

at::Tensor logits_of(const LlamaModel& model) {
  c10::InferenceMode guard;
  at::Tensor ids = at::tensor({3, 17, 5, 40, 22, 9, 1, 30}, at::kLong).view({2, 4});
  return model.logits(ids, at::ones({2, 4}, at::kLong));
}

TEST(NormAffine, FreshCopiesLeaveTheModelBitwiseUnchanged) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  const at::Tensor before = logits_of(*t.model);
  NormAffine norms(*t.model);
  const std::vector<std::string> names = norms.parameter_names();
  ASSERT_EQ(names.size(), 5u);  // 2 layers x (input, post-attention) + the final norm
  EXPECT_EQ(names[0], "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(names[1], "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(names[4], "model.norm.weight");
  for (const at::Tensor& p : norms.parameters()) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_EQ(p.scalar_type(), at::kFloat);
  }
  EXPECT_TRUE(at::equal(logits_of(*t.model), before));
}

TEST(NormAffine, GradientsReachOnlyTheNormsAndDisableIsTheBase) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  const at::Tensor base = logits_of(*t.model);
  NormAffine norms(*t.model, {"post_attention_layernorm", "norm"});
  ASSERT_EQ(norms.parameters().size(), 3u);
  at::Tensor ids = at::tensor({3, 17, 5, 40}, at::kLong).view({1, 4});
  t.model->logits(ids, at::Tensor()).pow(2).mean().backward();
  for (const at::Tensor& p : norms.parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_GT(p.grad().abs().max().item<double>(), 0.0);
  }
  {
    at::NoGradGuard no_grad;
    for (const at::Tensor& p : norms.parameters()) p.mul_(1.5);
  }
  EXPECT_FALSE(at::allclose(logits_of(*t.model), base));
  norms.set_enabled(false);
  EXPECT_TRUE(at::equal(logits_of(*t.model), base));
  norms.set_enabled(true);
  EXPECT_FALSE(at::allclose(logits_of(*t.model), base));
}

TEST(NormAffine, StateRoundTripAndErrors) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  NormAffine norms(*t.model);
  std::map<std::string, at::Tensor> state = norms.full_state();
  for (auto& [name, w] : state) w = w + 0.25;
  norms.load_full_state(state, "saved");
  const std::map<std::string, at::Tensor> back = norms.full_state();
  for (const auto& [name, w] : state) EXPECT_TRUE(at::equal(back.at(name), w)) << name;

  state["model.norm.weight"] = at::ones({3});
  EXPECT_EQ(lacks(error_of([&] { norms.load_full_state(state, "saved"); }),
                  {"saved", "'model.norm.weight'", "[3]"}),
            "");
  state.erase("model.norm.weight");
  EXPECT_EQ(lacks(error_of([&] { norms.load_full_state(state, "saved"); }), {"saved", "'model.norm.weight'"}), "");
  EXPECT_EQ(lacks(error_of([&] { NormAffine bad(*t.model, {"layernorm"}); }), {"'layernorm'", "input_layernorm"}), "");
}

}  // namespace
}  // namespace tlm
