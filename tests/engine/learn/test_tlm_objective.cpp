// tlm_loss: sample selection, the detached coefficient, the normaliser, the perplexity
// variant and the offline selection_ce, each checked against the formula written out by
// hand; per_sample_ce against scoring's mean_token_nll.
//
// Tolerance: 1e-6 relative (float32 sums of a few terms).
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/generate/scoring.h"
#include "engine/generate/token_batch.h"
#include "engine/learn/tlm_objective.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

at::Tensor ce_tensor(const std::vector<double>& v) {
  return at::tensor(v, at::kDouble).to(at::kFloat).set_requires_grad(true);
}

TlmObjectiveOptions options(double threshold, double lambda) {
  TlmObjectiveOptions o;
  o.threshold = threshold;
  o.lambda = lambda;
  return o;
}

void expect_rel(double got, double want, const char* what) {
  EXPECT_NEAR(got, want, 1e-6 * std::max(1.0, std::abs(want))) << what;
}

std::vector<bool> mask_of(const TlmLoss& l) {
  std::vector<bool> out;
  for (int64_t i = 0; i < l.mask.size(0); ++i) out.push_back(l.mask[i].item<bool>());
  return out;
}

TEST(TlmLoss, NoneSelectedIsZeroButDifferentiable) {
  at::Tensor ce = ce_tensor({1.0, 2.5, 3.0});  // 3.0 is not > 3.0
  TlmLoss l = tlm_loss(ce, at::Tensor(), options(3.0, 0.1));
  EXPECT_EQ(mask_of(l), (std::vector<bool>{false, false, false}));
  EXPECT_EQ(l.loss.item<double>(), 0.0);
  EXPECT_EQ(l.loss.dim(), 0);
  ASSERT_TRUE(l.loss.requires_grad());
  l.loss.backward();
  ASSERT_TRUE(ce.grad().defined());
  EXPECT_TRUE(at::equal(ce.grad(), at::zeros({3})));
}

TEST(TlmLoss, AllSelected) {
  const std::vector<double> v = {3.5, 4.0, 5.0};
  TlmLoss l = tlm_loss(ce_tensor(v), at::Tensor(), options(3.0, 0.1));
  EXPECT_EQ(mask_of(l), (std::vector<bool>{true, true, true}));
  double want = 0.0;
  for (double c : v) want += 0.1 * std::exp(c - 3.0) * c;
  expect_rel(l.loss.item<double>(), want / 3.0, "loss");
  for (size_t i = 0; i < v.size(); ++i)
    expect_rel(l.coeff[static_cast<int64_t>(i)].item<double>(), 0.1 * std::exp(v[i] - 3.0), "coeff");
}

TEST(TlmLoss, MixedSelectionByHand) {
  // ce = [2.0, 3.5, 4.2, 3.0], threshold 3, lambda 0.2: samples 1 and 2 are selected;
  // loss = (0.2 e^0.5 * 3.5 + 0.2 e^1.2 * 4.2) / 2 = (1.1541049 + 2.7888982) / 2 = 1.9715016.
  TlmLoss l = tlm_loss(ce_tensor({2.0, 3.5, 4.2, 3.0}), at::Tensor(), options(3.0, 0.2));
  EXPECT_EQ(mask_of(l), (std::vector<bool>{false, true, true, false}));
  expect_rel(l.loss.item<double>(), (0.2 * std::exp(0.5) * 3.5 + 0.2 * std::exp(1.2) * 4.2) / 2.0,
             "loss");
  EXPECT_NEAR(l.loss.item<double>(), 1.9715016, 1e-6);
  // Unselected samples still get their coefficient reported.
  expect_rel(l.coeff[0].item<double>(), 0.2 * std::exp(-1.0), "coeff of an unselected sample");
}

TEST(TlmLoss, CoefficientIsDetached) {
  // d loss / d ce_i = coeff_i * mask_i / max(1, n): the exponential weight is not
  // differentiated (the official code computes it under no_grad).
  const std::vector<double> v = {2.0, 3.5, 4.2, 5.0};
  at::Tensor ce = ce_tensor(v);
  TlmLoss l = tlm_loss(ce, at::Tensor(), options(3.0, 0.1));
  EXPECT_FALSE(l.coeff.requires_grad());
  EXPECT_FALSE(l.mask.requires_grad());
  l.loss.backward();
  for (size_t i = 0; i < v.size(); ++i) {
    const double want = v[i] > 3.0 ? 0.1 * std::exp(v[i] - 3.0) / 3.0 : 0.0;
    expect_rel(ce.grad()[static_cast<int64_t>(i)].item<double>(), want, "gradient");
  }
}

TEST(TlmLoss, AblationIsMeanCe) {
  TlmObjectiveOptions o = options(3.0, 0.1);
  o.sample_selection = false;
  at::Tensor ce = ce_tensor({1.0, 2.0, 6.0});
  TlmLoss l = tlm_loss(ce, at::Tensor(), o);
  EXPECT_EQ(mask_of(l), (std::vector<bool>{true, true, true}));
  EXPECT_TRUE(at::equal(l.coeff, at::ones({3})));
  expect_rel(l.loss.item<double>(), 3.0, "mean ce");
  l.loss.backward();
  EXPECT_TRUE(at::allclose(ce.grad(), at::full({3}, 1.0f / 3.0f), 0.0, 1e-7));
}

TEST(TlmLoss, PerplexityVariant) {
  TlmObjectiveOptions o = options(3.0, 0.1);
  o.perplexity_loss = true;
  const std::vector<double> v = {2.0, 3.5, 4.0};
  at::Tensor ce = ce_tensor(v);
  TlmLoss l = tlm_loss(ce, at::Tensor(), o);
  const double c1 = 0.1 * std::exp(0.5), c2 = 0.1 * std::exp(1.0);
  expect_rel(l.loss.item<double>(), (c1 * std::exp(3.5) + c2 * std::exp(4.0)) / 2.0, "loss");
  l.loss.backward();
  expect_rel(ce.grad()[0].item<double>(), 0.0, "grad 0");
  expect_rel(ce.grad()[1].item<double>(), c1 * std::exp(3.5) / 2.0, "grad 1");
  expect_rel(ce.grad()[2].item<double>(), c2 * std::exp(4.0) / 2.0, "grad 2");
}

TEST(TlmLoss, OfflineSelectionCe) {
  // Offline: mask and coeff from the base model's ce, the value from the current ce.
  at::Tensor ce = ce_tensor({5.0, 5.0, 5.0});
  at::Tensor sel = at::tensor({2.0, 4.0, 3.5}, at::kDouble).to(at::kFloat);
  TlmLoss l = tlm_loss(ce, sel, options(3.0, 0.1));
  EXPECT_EQ(mask_of(l), (std::vector<bool>{false, true, true}));
  const double c1 = 0.1 * std::exp(1.0), c2 = 0.1 * std::exp(0.5);
  expect_rel(l.coeff[1].item<double>(), c1, "coeff 1");
  expect_rel(l.coeff[2].item<double>(), c2, "coeff 2");
  expect_rel(l.loss.item<double>(), (c1 * 5.0 + c2 * 5.0) / 2.0, "loss");
  l.loss.backward();
  expect_rel(ce.grad()[0].item<double>(), 0.0, "grad 0");
  expect_rel(ce.grad()[1].item<double>(), c1 / 2.0, "grad 1");
  // A double-precision selection_ce is accepted too.
  TlmLoss d = tlm_loss(ce_tensor({5.0, 5.0, 5.0}), sel.to(at::kDouble), options(3.0, 0.1));
  expect_rel(d.loss.item<double>(), l.loss.item<double>(), "double selection_ce");
}

TEST(TlmLoss, GlobalSelectedNormaliser) {
  const std::vector<double> v = {3.5, 4.0};
  const double sum = 0.1 * std::exp(0.5) * 3.5 + 0.1 * std::exp(1.0) * 4.0;
  expect_rel(tlm_loss(ce_tensor(v), at::Tensor(), options(3.0, 0.1), 5.0).loss.item<double>(),
             sum / 5.0, "global 5");
  // 0 selected anywhere (possible on another replica's count): max(1, 0) = 1.
  expect_rel(tlm_loss(ce_tensor(v), at::Tensor(), options(3.0, 0.1), 0.0).loss.item<double>(),
             sum, "global 0");
  at::Tensor ce = ce_tensor(v);
  tlm_loss(ce, at::Tensor(), options(3.0, 0.1), 8.0).loss.backward();
  expect_rel(ce.grad()[1].item<double>(), 0.1 * std::exp(1.0) / 8.0, "gradient / global");
}

TEST(PerSampleCe, EqualsMeanTokenNll) {
  test::TinyLlama t = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  const std::vector<std::vector<int32_t>> seqs = {{3, 17, 5, 40, 22}, {8, 9}, {30, 12, 44, 7, 2, 1, 0}};
  at::Tensor ce = per_sample_ce(*t.model, right_padded_batch(seqs, 0));
  std::vector<double> ref = mean_token_nll(*t.model, seqs, 8, 0);
  ASSERT_EQ(ce.sizes(), at::IntArrayRef({3}));
  EXPECT_EQ(ce.scalar_type(), at::kFloat);
  for (size_t i = 0; i < seqs.size(); ++i)
    EXPECT_NEAR(ce[static_cast<int64_t>(i)].item<double>(), ref[i], 1e-5) << i;
}

}  // namespace
}  // namespace tlm
