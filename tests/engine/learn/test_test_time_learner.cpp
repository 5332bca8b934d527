// TestTimeLearner on a tiny random model written by the test: a step trains the LoRA tensors
// only, steps without a selected sample follow the official code (update) or skip when
// asked, and a non-finite loss leaves adapter and optimiser state bitwise untouched.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "engine/common/error.h"
#include "engine/generate/scoring.h"
#include "engine/learn/lora.h"
#include "engine/learn/test_time_learner.h"
#include "tests/engine/learn/bitwise.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::same_bytes;
using test::snapshot;

struct Rig {
  test::TinyLlama tiny;
  std::unique_ptr<LoraAdapters> lora;
  std::unique_ptr<TestTimeLearner> learner;
};

Rig make_rig(const TlmObjectiveOptions& objective, const StepOptions& step) {
  Rig r;
  r.tiny = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  LoraConfig c;
  c.targets = {"q_proj", "v_proj", "o_proj", "down_proj"};  // column and row layers
  c.rank = 4;
  r.lora = std::make_unique<LoraAdapters>(*r.tiny.model, c);
  r.learner = std::make_unique<TestTimeLearner>(*r.tiny.model, *r.lora, objective, step, AdamWOptions{});
  return r;
}

TlmObjectiveOptions objective(double threshold) {
  TlmObjectiveOptions o;
  o.threshold = threshold;
  o.lambda = 0.1;
  return o;
}

const std::vector<std::vector<int32_t>> kBatch = {{3, 17, 5, 40, 22, 9}, {8, 9, 10, 11}, {30, 12, 44, 7, 2}};

at::Tensor base_logits(Rig& r) {
  c10::InferenceMode guard;
  r.lora->set_enabled(false);
  at::Tensor ids = at::tensor({3, 17, 5, 40, 22, 9}, at::kLong).view({1, 6});
  at::Tensor out = r.tiny.model->logits(ids, at::ones({1, 6}, at::kLong));
  r.lora->set_enabled(true);
  return out;
}

TEST(TestTimeLearner, StepMovesOnlyLoraTensors) {
  Rig r = make_rig(objective(0.0), StepOptions{});  // threshold 0: every sample selected
  std::vector<at::Tensor> base_weights;
  for (const Projection& p : r.tiny.model->projections())
    base_weights.push_back((p.column ? p.column->weight() : p.row->weight()).clone());
  const at::Tensor base_before = base_logits(r);
  const std::vector<double> ce_before = mean_token_nll(*r.tiny.model, kBatch, 8, 0);
  const std::vector<at::Tensor> p0 = snapshot(r.lora->parameters());

  StepRecord rec = r.learner->train_step(kBatch, 1e-2);
  EXPECT_TRUE(rec.updated) << rec.skip_reason;
  EXPECT_EQ(rec.skip_reason, "");
  EXPECT_EQ(rec.step, 1);
  EXPECT_EQ(rec.tokens, 15);
  EXPECT_DOUBLE_EQ(rec.lr, 1e-2);
  EXPECT_GT(rec.grad_norm, 0.0);
  ASSERT_EQ(rec.current_ce.size(), 3u);
  ASSERT_EQ(rec.selected.size(), 3u);
  double want_loss = 0.0;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(rec.selected[i]);
    // B = 0 before the first step: the model being trained is the base model.
    EXPECT_NEAR(rec.current_ce[i], ce_before[i], 1e-5) << i;
    EXPECT_EQ(rec.ce[i], rec.current_ce[i]) << "online: selection uses the current ce";
    EXPECT_NEAR(rec.coeff[i], 0.1 * std::exp(rec.current_ce[i]), 1e-5 * rec.coeff[i]) << i;
    want_loss += rec.coeff[i] * rec.current_ce[i] / 3.0;
  }
  EXPECT_NEAR(rec.loss, want_loss, 1e-5 * want_loss);

  // First step: B has a gradient and moves; A's gradient is exactly zero while B = 0, so
  // Adam leaves it bitwise as it was.
  std::vector<at::Tensor> p1 = snapshot(r.lora->parameters());
  for (size_t i = 0; i < p1.size(); ++i) {
    if (i % 2 == 0) {
      EXPECT_TRUE(same_bytes(p1[i], p0[i])) << r.lora->parameter_names()[i];
    } else {
      EXPECT_FALSE(at::equal(p1[i], p0[i])) << r.lora->parameter_names()[i];
    }
  }
  StepRecord rec2 = r.learner->train_step(kBatch, 1e-2);
  EXPECT_TRUE(rec2.updated);
  EXPECT_EQ(rec2.step, 2);
  std::vector<at::Tensor> p2 = snapshot(r.lora->parameters());
  for (size_t i = 0; i < p2.size(); ++i)
    EXPECT_FALSE(at::equal(p2[i], p1[i])) << r.lora->parameter_names()[i];

  // The base model is untouched, bit for bit.
  std::vector<Projection> projections = r.tiny.model->projections();
  for (size_t i = 0; i < projections.size(); ++i) {
    const Projection& p = projections[i];
    EXPECT_TRUE(same_bytes(p.column ? p.column->weight() : p.row->weight(), base_weights[i])) << p.name;
  }
  EXPECT_TRUE(same_bytes(base_logits(r), base_before));

  EXPECT_EQ(r.learner->optimizer().step_count(), 2);
  EXPECT_EQ(r.learner->steps(), 2);
  EXPECT_EQ(r.learner->skipped_steps(), 0);
  for (const at::Tensor& p : r.lora->parameters()) {
    EXPECT_FALSE(p.grad().defined()) << "gradients are cleared after the step";
    EXPECT_TRUE(p.requires_grad());
  }
  for (const Projection& p : r.lora->modules()) EXPECT_FALSE(p.lora()->training);
}

TEST(TestTimeLearner, TrainingLowersTheLoss) {
  TlmObjectiveOptions o = objective(0.0);
  o.sample_selection = false;  // ablation: loss = mean ce
  Rig r = make_rig(o, StepOptions{});
  const std::vector<std::vector<int32_t>> one = {kBatch[0]};
  const double first = r.learner->train_step(one, 2e-2).loss;
  double last = first;
  for (int i = 0; i < 15; ++i) last = r.learner->train_step(one, 2e-2).loss;  // before its update
  EXPECT_LT(last, first - 0.1) << "15 LoRA steps on one sequence must lower its NLL";
}

// Offline selection_ce steers selection: step 1 selects every sample, step 2 none.
void two_offline_steps(Rig& r, StepRecord& first, StepRecord& second,
                       std::vector<at::Tensor>& params_between,
                       std::vector<at::Tensor>& moments_between) {
  first = r.learner->train_step(kBatch, 1e-2, {10.0, 10.0, 10.0});
  params_between = snapshot(r.lora->parameters());
  moments_between = snapshot(r.learner->optimizer().exp_avg());
  for (const at::Tensor& t : snapshot(r.learner->optimizer().exp_avg_sq())) moments_between.push_back(t);
  second = r.learner->train_step(kBatch, 1e-2, {0.5, 1.0, 2.9});
}

TEST(TestTimeLearner, UnselectedStepStillUpdatesLikeTheOfficialCode) {
  Rig r = make_rig(objective(3.0), StepOptions{});
  StepRecord first, second;
  std::vector<at::Tensor> params, moments;
  two_offline_steps(r, first, second, params, moments);
  EXPECT_TRUE(first.updated);
  EXPECT_EQ(first.ce, (std::vector<double>{10.0, 10.0, 10.0})) << "offline: ce is the selection ce";
  EXPECT_NEAR(first.coeff[0], 0.1 * std::exp(7.0), 1e-4 * first.coeff[0]);
  EXPECT_EQ(second.selected, (std::vector<bool>{false, false, false}));
  EXPECT_EQ(second.loss, 0.0);
  EXPECT_TRUE(second.updated) << second.skip_reason;
  EXPECT_EQ(second.grad_norm, 0.0);
  // Zero gradient, but Adam's first moment from step 1 still moves every B.
  std::vector<at::Tensor> after = r.lora->parameters();
  for (size_t i = 1; i < after.size(); i += 2)
    EXPECT_FALSE(at::equal(after[i], params[i])) << r.lora->parameter_names()[i];
  // The learner skips that step's backward; the update is bitwise AdamW on zero gradients
  // from the state after step 1 (what the official code's zero-loss backward feeds it).
  std::vector<at::Tensor> copy;
  for (const at::Tensor& p : params) copy.push_back(p.clone().set_requires_grad(true));
  AdamW reference(copy, AdamWOptions{});
  for (size_t i = 0; i < copy.size(); ++i) {
    reference.exp_avg()[i].copy_(moments[i]);
    reference.exp_avg_sq()[i].copy_(moments[copy.size() + i]);
    copy[i].mutable_grad() = at::zeros_like(copy[i]);
  }
  reference.set_step_count(1);
  reference.step(1e-2);
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(same_bytes(after[i], copy[i])) << r.lora->parameter_names()[i];
  EXPECT_EQ(r.learner->optimizer().step_count(), 2);
  EXPECT_EQ(r.learner->skipped_steps(), 0);
}

TEST(TestTimeLearner, UnselectedStepSkippedWhenAsked) {
  StepOptions s;
  s.skip_unselected = true;
  Rig r = make_rig(objective(3.0), s);
  StepRecord first, second;
  std::vector<at::Tensor> params, moments;
  two_offline_steps(r, first, second, params, moments);
  EXPECT_TRUE(first.updated);
  EXPECT_FALSE(second.updated);
  EXPECT_EQ(second.skip_reason, "no sample selected");
  std::vector<at::Tensor> after = r.lora->parameters();
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(same_bytes(after[i], params[i])) << i;
  std::vector<at::Tensor> m_after = r.learner->optimizer().exp_avg();
  for (const at::Tensor& t : r.learner->optimizer().exp_avg_sq()) m_after.push_back(t);
  for (size_t i = 0; i < m_after.size(); ++i) EXPECT_TRUE(same_bytes(m_after[i], moments[i])) << i;
  EXPECT_EQ(r.learner->optimizer().step_count(), 1);
  EXPECT_EQ(r.learner->steps(), 2);
  EXPECT_EQ(r.learner->skipped_steps(), 1);
}

TEST(TestTimeLearner, NonFiniteLossSkipsTheUpdate) {
  Rig r = make_rig(objective(0.0), StepOptions{});
  ASSERT_TRUE(r.learner->train_step(kBatch, 1e-2).updated);
  ASSERT_TRUE(r.learner->train_step(kBatch, 1e-2).updated);  // A and B both non-trivial now

  // A NaN in one LoRA A element makes every ce NaN through that projection.
  at::Tensor a0 = r.lora->parameters()[0];
  const float saved = a0[0][0].item<float>();
  {
    at::NoGradGuard no_grad;
    a0.select(0, 0).select(0, 0).fill_(std::numeric_limits<float>::quiet_NaN());
  }
  const std::vector<at::Tensor> params = snapshot(r.lora->parameters());
  const std::vector<at::Tensor> m = snapshot(r.learner->optimizer().exp_avg());
  const std::vector<at::Tensor> v = snapshot(r.learner->optimizer().exp_avg_sq());

  StepRecord rec = r.learner->train_step(kBatch, 1e-2);
  EXPECT_FALSE(rec.updated);
  EXPECT_EQ(rec.skip_reason, "non-finite loss");
  EXPECT_TRUE(std::isnan(rec.loss));
  EXPECT_EQ(rec.step, 3);
  std::vector<at::Tensor> after = r.lora->parameters();
  for (size_t i = 0; i < after.size(); ++i)
    EXPECT_TRUE(same_bytes(after[i], params[i])) << r.lora->parameter_names()[i];
  for (size_t i = 0; i < m.size(); ++i) {
    EXPECT_TRUE(same_bytes(r.learner->optimizer().exp_avg()[i], m[i])) << "exp_avg " << i;
    EXPECT_TRUE(same_bytes(r.learner->optimizer().exp_avg_sq()[i], v[i])) << "exp_avg_sq " << i;
  }
  EXPECT_EQ(r.learner->optimizer().step_count(), 2);
  EXPECT_EQ(r.learner->steps(), 3);
  EXPECT_EQ(r.learner->skipped_steps(), 1);
  for (const at::Tensor& p : after) EXPECT_FALSE(p.grad().defined());

  // Repaired, training resumes where it stopped.
  {
    at::NoGradGuard no_grad;
    a0.select(0, 0).select(0, 0).fill_(saved);
  }
  StepRecord resumed = r.learner->train_step(kBatch, 1e-2);
  EXPECT_TRUE(resumed.updated) << resumed.skip_reason;
  EXPECT_EQ(r.learner->optimizer().step_count(), 3);
  EXPECT_EQ(r.learner->skipped_steps(), 1);
}

TEST(TestTimeLearner, GradientsAreClipped) {
  // Adam is blind to a uniform gradient scale except through eps, so clipping to 1e-10
  // shows as updates of at most lr * 1e-10 / (|g| + 1e-8) <= 0.01 lr, where the unclipped
  // first step moves every B element with a non-zero gradient by about lr.
  const double lr = 1e-2;
  StepOptions tight;
  tight.max_grad_norm = 1e-10;
  Rig clipped = make_rig(objective(0.0), tight);
  StepRecord c = clipped.learner->train_step(kBatch, lr);
  ASSERT_TRUE(c.updated);
  StepOptions loose;
  loose.max_grad_norm = 0.0;  // no clipping
  Rig free = make_rig(objective(0.0), loose);
  StepRecord f = free.learner->train_step(kBatch, lr);
  ASSERT_TRUE(f.updated);
  EXPECT_NEAR(c.grad_norm, f.grad_norm, 1e-6 * f.grad_norm) << "the norm is reported before clipping";
  EXPECT_GT(f.grad_norm, 1e-3);
  for (size_t i = 1; i < clipped.lora->parameters().size(); i += 2) {
    EXPECT_LE(clipped.lora->parameters()[i].abs().max().item<double>(), 0.011 * lr);
    EXPECT_GT(free.lora->parameters()[i].abs().max().item<double>(), 0.9 * lr);
  }
}

TEST(TestTimeLearner, NonFiniteGradientSkipsTheUpdate) {
  // Offline selection with a coefficient near float's limit: lambda * exp(88.5) = 2.8e37.
  // The loss (coeff * ce, ce of a few units) stays finite; its gradient through the model
  // overflows float32, so the step must be refused with the state untouched.
  Rig r = make_rig(objective(3.0), StepOptions{});
  ASSERT_TRUE(r.learner->train_step(kBatch, 1e-2).updated);
  const std::vector<at::Tensor> params = snapshot(r.lora->parameters());
  const std::vector<at::Tensor> m = snapshot(r.learner->optimizer().exp_avg());
  const std::vector<at::Tensor> v = snapshot(r.learner->optimizer().exp_avg_sq());
  StepRecord rec = r.learner->train_step({kBatch[0]}, 1e-2, {3.0 + 88.5});
  ASSERT_TRUE(std::isfinite(rec.loss)) << "fixture: the loss must be finite, got " << rec.loss;
  EXPECT_FALSE(rec.updated);
  EXPECT_EQ(rec.skip_reason, "non-finite gradient");
  EXPECT_FALSE(std::isfinite(rec.grad_norm));
  std::vector<at::Tensor> after = r.lora->parameters();
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_TRUE(same_bytes(after[i], params[i])) << r.lora->parameter_names()[i];
    EXPECT_FALSE(after[i].grad().defined());
  }
  for (size_t i = 0; i < m.size(); ++i) {
    EXPECT_TRUE(same_bytes(r.learner->optimizer().exp_avg()[i], m[i])) << "exp_avg " << i;
    EXPECT_TRUE(same_bytes(r.learner->optimizer().exp_avg_sq()[i], v[i])) << "exp_avg_sq " << i;
  }
  EXPECT_EQ(r.learner->optimizer().step_count(), 1);
  EXPECT_EQ(r.learner->skipped_steps(), 1);
}

TEST(TestTimeLearner, BadBatchesThrow) {
  Rig r = make_rig(objective(0.0), StepOptions{});
  EXPECT_THROW(r.learner->train_step({}, 1e-2), Error);
  EXPECT_THROW(r.learner->train_step(kBatch, 1e-2, {1.0, 2.0}), Error);
  EXPECT_EQ(r.learner->optimizer().step_count(), 0);
}

}  // namespace
}  // namespace tlm
