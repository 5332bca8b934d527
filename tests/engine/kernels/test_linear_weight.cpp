// The packed linear (engine/kernels/linear_weight.h) against at::linear, the product it
// replaces: forward, input gradient, repacking after an in-place change, and refusal where
// packing is impossible. oneDNN sums the same fp32 products in another order, so results
// agree to rounding: |packed - at::linear| <= 1e-5 * max|at::linear| (fp32 has 24 bits;
// a 1536-term dot product's reordering stays below 1e-6 relative in practice).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "engine/common/error.h"
#include "engine/kernels/linear_weight.h"

namespace tlm {
namespace {

constexpr double kRel = 1e-5;

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

class PackedLinear : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch was built without oneDNN";
    at::manual_seed(7);
  }
};

TEST_F(PackedLinear, ForwardMatchesAtLinearAtEveryRowCount) {
  for (auto [out, in] : {std::pair<int64_t, int64_t>{576, 576}, {192, 576}, {576, 1536}, {1000, 64}}) {
    LinearWeight w(at::randn({out, in}) * 0.05);
    pack(w, /*backward=*/false);
    ASSERT_TRUE(w.packed.defined());
    EXPECT_FALSE(w.packed_t.defined());
    for (int64_t rows : {1, 3, 8, 44, 300}) {
      at::Tensor x = at::randn({rows, in});
      EXPECT_LE(rel_diff(linear(x, w), at::linear(x, w.plain)), kRel) << out << "x" << in << " rows " << rows;
    }
  }
}

TEST_F(PackedLinear, KeepsLeadingDimsAndAddsBias) {
  LinearWeight w(at::randn({96, 64}));
  pack(w, false);
  at::Tensor b = at::randn({96});
  at::Tensor x = at::randn({2, 5, 64});
  at::Tensor y = linear(x, w, b);
  EXPECT_EQ(y.sizes(), at::IntArrayRef({2, 5, 96}));
  EXPECT_LE(rel_diff(y, at::linear(x, w.plain, b)), kRel);
  // A non-contiguous input (a transposed view) is taken as its values.
  at::Tensor xt = at::randn({64, 7}).t();
  EXPECT_LE(rel_diff(linear(xt, w), at::linear(xt, w.plain)), kRel);
}

TEST_F(PackedLinear, InputGradientMatchesAutogradOfAtLinear) {
  for (bool backward : {true, false}) {
    LinearWeight w(at::randn({160, 48}));
    pack(w, backward);
    EXPECT_EQ(w.packed_t.defined(), backward);
    at::Tensor x0 = at::randn({3, 11, 48});
    at::Tensor g = at::randn({3, 11, 160});
    at::Tensor x = x0.clone().requires_grad_(true);
    linear(x, w).backward(g);
    at::Tensor x_ref = x0.clone().requires_grad_(true);
    at::linear(x_ref, w.plain).backward(g);
    EXPECT_LE(rel_diff(x.grad(), x_ref.grad()), kRel) << "packed backward " << backward;
    EXPECT_LE(rel_diff(input_gradient(g, w), at::matmul(g, w.plain)), kRel);
  }
}

TEST_F(PackedLinear, InferenceModeTakesThePackedProduct) {
  LinearWeight w(at::randn({32, 16}));
  pack(w, true);
  c10::InferenceMode guard;
  at::Tensor x = at::randn({4, 16});
  EXPECT_LE(rel_diff(linear(x, w), at::linear(x, w.plain)), kRel);
}

TEST_F(PackedLinear, RepackFollowsAnInPlaceChange) {
  LinearWeight w(at::randn({64, 32}));
  pack(w, true);
  at::Tensor x = at::randn({5, 32});
  const at::Tensor before = linear(x, w);
  w.plain.add_(1.0);
  // Stale until repacked: the packed copies still hold the old weight.
  EXPECT_LE(rel_diff(linear(x, w), before), kRel);
  repack(w);
  EXPECT_LE(rel_diff(linear(x, w), at::linear(x, w.plain)), kRel);
  EXPECT_TRUE(w.packed_t.defined());
  EXPECT_EQ(w.packed_bytes(), 2 * static_cast<int64_t>(w.plain.nbytes()));
}

TEST_F(PackedLinear, UnpackedWeightIsAtLinearBitwise) {
  LinearWeight w(at::randn({40, 24}));
  at::Tensor x = at::randn({6, 24});
  EXPECT_TRUE(at::equal(linear(x, w), at::linear(x, w.plain)));
  EXPECT_EQ(w.packed_bytes(), 0);
}

TEST_F(PackedLinear, RefusesWhatItCannotPack) {
  EXPECT_FALSE(can_pack(at::randn({4, 4}).to(at::kBFloat16)));
  EXPECT_FALSE(can_pack(at::randn({4})));
  EXPECT_FALSE(can_pack(at::Tensor()));
  LinearWeight bf16(at::randn({4, 4}).to(at::kBFloat16));
  try {
    pack(bf16, false);
    FAIL() << "packing a bf16 weight should throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp32 CPU weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tlm
