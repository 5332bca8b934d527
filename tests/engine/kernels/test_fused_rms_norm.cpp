// The one-pass RMSNorm (engine/kernels/fused_rms_norm.h) against the composite of ATen ops it
// stands in for, w * (x * rsqrt(mean(x^2) + eps)), forward and both gradients. The mean's
// sum runs in another order (8- or 16-lane partial sums), so results agree to rounding:
// forward within 2e-6 of max|y| relative, gradients within 1e-5 (a 576-term dot product more
// in the backward). Each row is computed alone: a row's output does not depend on the batch.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/kernels/fused_rms_norm.h"

namespace tlm {
namespace {

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

at::Tensor composite(const at::Tensor& x, const at::Tensor& w, double eps) {
  return w * (x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps));
}

TEST(FusedRmsNorm, ForwardAndGradientsMatchTheComposite) {
  at::manual_seed(3);
  // H = 576 (the default model), 70 (not a multiple of the vector width), 1536; 1 to 300 rows.
  for (auto shape : {std::vector<int64_t>{1, 41, 576}, {3, 5, 70}, {1, 1, 1536}, {300, 64}}) {
    const int64_t H = shape.back();
    at::Tensor x = (at::randn(shape) * 3.0).requires_grad_(true);
    at::Tensor w = (1.0 + 0.1 * at::randn({H})).requires_grad_(true);
    at::Tensor x_ref = x.detach().clone().requires_grad_(true);
    at::Tensor w_ref = w.detach().clone().requires_grad_(true);
    ASSERT_TRUE(fused_rms_norm_applies(x, w));
    at::Tensor y = fused_rms_norm(x, w, 1e-5);
    at::Tensor y_ref = composite(x_ref, w_ref, 1e-5);
    ASSERT_EQ(y.sizes(), y_ref.sizes());
    EXPECT_LE(rel_diff(y.detach(), y_ref.detach()), 2e-6) << at::IntArrayRef(shape);
    at::Tensor dy = at::randn(shape);
    y.backward(dy);
    y_ref.backward(dy);
    EXPECT_LE(rel_diff(x.grad(), x_ref.grad()), 1e-5) << at::IntArrayRef(shape);
    EXPECT_LE(rel_diff(w.grad(), w_ref.grad()), 1e-5) << at::IntArrayRef(shape);
  }
}

TEST(FusedRmsNorm, NonContiguousInputAndFrozenWeight) {
  at::manual_seed(4);
  at::Tensor x = at::randn({64, 6}).t().requires_grad_(true);  // [6, 64], rows not contiguous
  at::Tensor w = 1.0 + 0.1 * at::randn({64});                   // frozen: no weight gradient
  at::Tensor x_ref = x.detach().clone().requires_grad_(true);
  at::Tensor y = fused_rms_norm(x, w, 1e-6);
  EXPECT_LE(rel_diff(y.detach(), composite(x_ref, w, 1e-6).detach()), 2e-6);
  y.sum().backward();
  composite(x_ref, w, 1e-6).sum().backward();
  EXPECT_LE(rel_diff(x.grad(), x_ref.grad()), 1e-5);
  EXPECT_FALSE(w.grad().defined());
}

TEST(FusedRmsNorm, EachRowAloneIsBitwiseItsRowInABatch) {
  at::manual_seed(5);
  at::Tensor x = at::randn({200, 576});
  at::Tensor w = 1.0 + 0.1 * at::randn({576});
  at::Tensor batch = fused_rms_norm(x, w, 1e-5);
  for (int64_t i : {0, 7, 199}) EXPECT_TRUE(at::equal(fused_rms_norm(x.narrow(0, i, 1), w, 1e-5), batch.narrow(0, i, 1)));
}

TEST(FusedRmsNorm, AppliesToCpuFp32WithOneWeightRowOnly) {
  const at::Tensor x = at::randn({2, 8}), w = at::ones({8});
  EXPECT_TRUE(fused_rms_norm_applies(x, w));
  EXPECT_FALSE(fused_rms_norm_applies(x.to(at::kBFloat16), w));
  EXPECT_FALSE(fused_rms_norm_applies(x, w.to(at::kDouble)));
  EXPECT_FALSE(fused_rms_norm_applies(x.view({2, 1, 8}), at::ones({2, 1, 8})));  // per-row weights
  EXPECT_FALSE(fused_rms_norm_applies(x, at::ones({4})));
  EXPECT_FALSE(fused_rms_norm_applies(at::randn({0, 8}), w));
}

}  // namespace
}  // namespace tlm
