// Episodic adaptation on a tiny random model written by the test: each episode takes K plain
// gradient steps (theta - lr * grad, checked against autograd on a fresh copy), lowers the
// prompt's NLL, and after each prompt the LoRA tensors are bitwise their fresh values and the
// base model's logits bitwise what they were; an episode repeated gives bitwise the same NLLs.
#include <cstring>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "engine/generate/token_batch.h"
#include "engine/learn/lora.h"
#include "engine/learn/episodic.h"
#include "engine/learn/tlm_objective.h"
#include "tests/engine/learn/bitwise.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::same_bytes;
using test::snapshot;

at::Tensor base_logits(LlamaModel& model, LoraAdapters& lora) {
  c10::InferenceMode guard;
  lora.set_enabled(false);
  const at::Tensor ids = at::tensor({3, 17, 5, 40, 22, 9}, at::kLong).view({1, 6});
  at::Tensor out = model.logits(ids, at::Tensor());
  lora.set_enabled(true);
  return out;
}

LoraConfig episodic_lora() {
  LoraConfig c;
  c.rank = 4;
  c.alpha = 16;
  return c;
}

TEST(Episodic, EveryEpisodeStartsFromTheFreshAdapterAndTheBaseNeverChanges) {
  test::TinyLlama tiny = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraAdapters lora(*tiny.model, episodic_lora());
  EpisodicAdapter episodes(*tiny.model, lora, {5, 1e-2});
  const std::vector<at::Tensor> fresh = snapshot(lora.parameters());
  const at::Tensor base = base_logits(*tiny.model, lora);
  const auto prompts = test::random_token_sequences(3, test::TinyLlamaSpec{}.vocab_size, 9, 6);
  std::vector<std::vector<double>> first;
  for (const auto& p : prompts) {
    const std::vector<double> nll = episodes.adapt(p);
    ASSERT_EQ(nll.size(), 6u);
    EXPECT_LT(nll.back(), nll.front()) << "K steps did not lower the prompt's NLL";
    bool moved = false;
    for (size_t i = 0; i < fresh.size(); ++i) moved |= !same_bytes(lora.parameters()[i], fresh[i]);
    EXPECT_TRUE(moved) << "the episode did not change the adapter";
    episodes.reset();
    for (size_t i = 0; i < fresh.size(); ++i)
      EXPECT_TRUE(same_bytes(lora.parameters()[i], fresh[i])) << lora.parameter_names()[i] << " after the episode";
    EXPECT_TRUE(same_bytes(base_logits(*tiny.model, lora), base)) << "the base model changed";
    first.push_back(nll);
  }
  // The same prompt again: the same episode, bitwise.
  EXPECT_EQ(episodes.adapt(prompts[1]), first[1]);
  episodes.reset();
}

TEST(Episodic, OneStepIsPlainGradientDescent) {
  test::TinyLlama tiny = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraAdapters lora(*tiny.model, episodic_lora());
  const double lr = 0.5;
  const std::vector<int32_t> prompt = {3, 17, 5, 40, 22, 9, 11};
  // B = 0 at the start, so only B has a gradient on the first step; take a second step's
  // state by first moving B off zero.
  {
    at::NoGradGuard no_grad;
    for (at::Tensor& p : lora.parameters()) p.add_(at::randn_like(p) * 0.05);
  }
  const std::vector<at::Tensor> before = snapshot(lora.parameters());
  std::vector<at::Tensor> want;
  {
    at::AutoGradMode grad(true);
    const at::Tensor loss = per_sample_ce(*tiny.model, right_padded_batch({prompt}, 0, tiny.model->device())).sum();
    loss.backward();
    for (at::Tensor& p : lora.parameters()) {
      want.push_back((p.detach() - lr * p.grad()).clone());
      p.mutable_grad() = at::Tensor();
    }
  }
  EpisodicAdapter episodes(*tiny.model, lora, {1, lr});
  episodes.adapt(prompt);
  double worst = 0, moved = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, (lora.parameters()[i] - want[i]).abs().max().item<double>());
    moved = std::max(moved, (want[i] - before[i]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-4);
  EXPECT_LE(worst, 1e-7) << "not theta - lr * grad";
  episodes.reset();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(same_bytes(lora.parameters()[i], before[i]));
}

}  // namespace
}  // namespace tlm
