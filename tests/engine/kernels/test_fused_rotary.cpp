// The one-pass rotary embedding (engine/kernels/fused_rotary.h) against the composite it
// stands in for, x * cos + cat(-x2, x1) * sin: the same products and sums rounded the same
// way, so the output and the input gradient are bitwise equal, whatever x's strides and
// whether cos/sin have one row of angles per batch row or one for all.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/kernels/fused_rotary.h"

namespace tlm {
namespace {

at::Tensor composite(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

void check(int64_t B, int64_t heads, int64_t T, int64_t D, int64_t angle_rows) {
  // q as Attention makes it: [B, T, heads, D] from the projection, transposed to [B, heads, T, D].
  at::Tensor x = at::randn({B, T, heads, D}).transpose(1, 2).requires_grad_(false);
  at::Tensor leaf = x.detach().clone().requires_grad_(true);
  at::Tensor leaf_ref = x.detach().clone().requires_grad_(true);
  at::Tensor angles = at::rand({angle_rows, T, D}) * 20.0;
  at::Tensor cos = angles.cos(), sin = angles.sin();
  ASSERT_TRUE(fused_rotary_applies(leaf, cos, sin));
  at::Tensor y = fused_rotary(leaf, cos, sin);  // leaf keeps the transposed strides (clone preserves them)
  at::Tensor y_ref = composite(leaf_ref, cos, sin);
  EXPECT_TRUE(y.is_contiguous());
  EXPECT_TRUE(at::equal(y.detach(), y_ref.detach())) << B << "x" << heads << "x" << T << "x" << D;
  at::Tensor dy = at::randn({B, heads, T, D});
  y.backward(dy);
  y_ref.backward(dy);
  EXPECT_TRUE(at::equal(leaf.grad(), leaf_ref.grad())) << B << "x" << heads << "x" << T << "x" << D;
}

TEST(FusedRotary, BitwiseTheCompositeForwardAndBackward) {
  at::manual_seed(11);
  check(1, 9, 41, 64, 1);   // the default model's query heads, one prompt
  check(3, 3, 17, 64, 3);   // its key heads, a padded batch with per-row positions
  check(2, 4, 1, 128, 1);   // one decode step, shared angles
  check(5, 2, 33, 6, 5);    // a head dimension below any vector width
  // A transposed view through to the kernel: x's own strides, not a contiguous copy.
  at::Tensor base = at::randn({2, 5, 3, 8});
  at::Tensor angles = at::rand({2, 5, 8});
  EXPECT_TRUE(at::equal(fused_rotary(base.transpose(1, 2), angles.cos(), angles.sin()),
                        composite(base.transpose(1, 2), angles.cos(), angles.sin())));
}

TEST(FusedRotary, AppliesToCpuFp32AnglesOfTheRightShapeOnly) {
  const at::Tensor x = at::randn({2, 3, 4, 8}), c = at::randn({2, 4, 8});
  EXPECT_TRUE(fused_rotary_applies(x, c, c));
  EXPECT_TRUE(fused_rotary_applies(x, c.narrow(0, 0, 1), c.narrow(0, 0, 1)));
  EXPECT_FALSE(fused_rotary_applies(x.to(at::kBFloat16), c, c));
  EXPECT_FALSE(fused_rotary_applies(x, c.to(at::kDouble), c.to(at::kDouble)));
  EXPECT_FALSE(fused_rotary_applies(x, at::randn({2, 5, 8}), at::randn({2, 5, 8})));  // other T
  EXPECT_FALSE(fused_rotary_applies(at::randn({2, 3, 4, 7}), at::randn({2, 4, 7}), at::randn({2, 4, 7})));
  EXPECT_FALSE(fused_rotary_applies(x, c.requires_grad_(true), c));
}

}  // namespace
}  // namespace tlm
