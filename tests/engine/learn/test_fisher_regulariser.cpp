// EATA's Fisher regulariser on a tiny random model written by the test:
//  - F against an independent computation: full logits (LlamaModel::logits), their argmax as
//    pseudo-labels, at::cross_entropy over the prompt's T - 1 predicting positions, backward,
//    squared gradients averaged over the prompts (within 4e-6 relative of the largest entry:
//    the two gradient paths, chunked vocab-parallel loss and full-logit cross-entropy, agree
//    to ~5e-7 relative, squaring doubles that, and MKL's rounding follows its buffers'
//    alignment, which changes from run to run: 1.0e-6 to 1.4e-6 seen over runs);
//  - the term's value and gradient against autograd of alpha * sum F (theta - theta0)^2 with
//    the trainables moved off theta0 (within 1e-6 relative), for LoRA and for norm-affine.
// Under TP and DP the learner's steps with the regulariser equal one process's
// (learn.test_time_learner_mpi).
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "engine/learn/fisher_regulariser.h"
#include "engine/learn/lora.h"
#include "engine/learn/norm_affine.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

std::vector<at::Tensor> reference_fisher(const LlamaModel& model, TrainableSet& set,
                                         const std::vector<std::vector<int32_t>>& prompts) {
  const std::vector<at::Tensor> params = set.parameters();
  std::vector<at::Tensor> fisher;
  for (const at::Tensor& p : params) fisher.push_back(at::zeros_like(p));
  for (const auto& prompt : prompts) {
    for (const at::Tensor& p : params) p.mutable_grad() = at::Tensor();
    at::AutoGradMode grad(true);
    const at::Tensor ids = at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end())).view({1, -1});
    const at::Tensor logits = model.logits(ids, at::Tensor())[0];  // [T, V]
    const int64_t T = logits.size(0);
    const at::Tensor labels = logits.detach().argmax(-1);
    at::cross_entropy_loss(logits.narrow(0, 0, T - 1), labels.narrow(0, 0, T - 1)).backward();
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) fisher[i] += params[i].grad() * params[i].grad();
  }
  for (const at::Tensor& p : params) p.mutable_grad() = at::Tensor();
  for (at::Tensor& f : fisher) f /= static_cast<double>(prompts.size());
  return fisher;
}

void check(TrainableSet& set, const LlamaModel& model) {
  const auto prompts = test::random_token_sequences(4, test::TinyLlamaSpec{}.vocab_size, 21, 6);
  const double alpha = 3.0;
  FisherRegulariser reg(model, set, prompts, alpha);
  const std::vector<at::Tensor> ref = reference_fisher(model, set, prompts);
  const std::vector<at::Tensor> params = set.parameters();
  std::vector<at::Tensor> theta0;
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_LE(rel_diff(reg.fisher()[i], ref[i]), 4e-6) << set.parameter_names()[i];
    theta0.push_back(params[i].detach().clone());
  }
  EXPECT_GT(ref.back().abs().max().item<double>(), 0.0);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  {
    at::NoGradGuard no_grad;
    for (const at::Tensor& p : params) p.add_(at::randn(p.sizes(), gen) * 0.1);
  }
  const double value = reg.add_gradient(set, make_single_process_communicator());
  std::vector<at::Tensor> ours;
  for (const at::Tensor& p : params) ours.push_back(p.grad().clone());
  for (const at::Tensor& p : params) p.mutable_grad() = at::Tensor();
  at::AutoGradMode grad(true);
  at::Tensor want = at::zeros({}, at::kDouble);
  for (size_t i = 0; i < params.size(); ++i)
    want = want + (reg.fisher()[i] * (params[i] - theta0[i]).pow(2)).sum().to(at::kDouble);
  want = want * alpha;
  want.backward();
  EXPECT_NEAR(value, want.item<double>(), 1e-6 * std::abs(want.item<double>()));
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_LE(rel_diff(ours[i], params[i].grad()), 1e-6) << set.parameter_names()[i];
  for (const at::Tensor& p : params) p.mutable_grad() = at::Tensor();
}

TEST(FisherRegulariser, LoraFisherValueAndGradientMatchReferences) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraConfig c;
  LoraAdapters lora(*t.model, c);
  {
    at::NoGradGuard no_grad;  // non-zero B, so A's gradient (and its Fisher entries) are not zero
    for (LoraSlot* s : lora.slots()) s->B.normal_(0.0, 0.05);
  }
  check(lora, *t.model);
}

TEST(FisherRegulariser, NormAffineFisherValueAndGradientMatchReferences) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  NormAffine norms(*t.model);
  check(norms, *t.model);
}

TEST(FisherRegulariser, RefusesAnEmptyReference) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  NormAffine norms(*t.model);
  EXPECT_EQ(test::lacks(test::error_of([&] { FisherRegulariser bad(*t.model, norms, {{5}}, 1.0); }),
                        {"fisher_data", "2 tokens"}),
            "");
}

}  // namespace
}  // namespace tlm
