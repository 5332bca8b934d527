// The vocab-parallel entropy and mean probabilities on the single-process communicator,
// against the plain ATen expressions: H = -sum softmax(z) * log_softmax(z) with autograd for
// the gradient, and the mean of softmax(z) over each group's rows.
// Tolerances: fp32 1e-5 absolute for the entropy (values ~0-4), 1e-5 relative to the largest
// gradient entry for its gradient (entries up to ~8 here); 1e-6 for the mean probabilities.
// Chunks of 3 rows so that chunks straddle groups.
#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/communicator.h"
#include "dist/vocab_parallel_entropy.h"
#include "tests/dist/dist_testing.h"

namespace tlm {
namespace {

using test::error_of;
using test::max_diff;

TEST(VocabParallelEntropy, MatchesSoftmaxEntropyAndItsGradient) {
  at::manual_seed(5);
  const at::Tensor w = at::randn({37, 8}), h0 = at::randn({7, 8}) * 2.0;
  for (int64_t chunk : {1, 3, 256}) {
    at::Tensor h = h0.clone().set_requires_grad(true);
    at::Tensor ours = vocab_parallel_entropy(h, w, make_single_process_communicator(), chunk);
    at::Tensor g = at::randn({7});
    (ours * g).sum().backward();
    at::Tensor hr = h0.clone().set_requires_grad(true);
    at::Tensor z = at::linear(hr, w);
    at::Tensor ref = -(at::softmax(z, -1) * at::log_softmax(z, -1)).sum(-1);
    (ref * g).sum().backward();
    EXPECT_EQ(ours.scalar_type(), at::kFloat);
    EXPECT_LE(max_diff(ours, ref), 1e-5) << "chunk " << chunk;
    const double scale = std::max(1.0, hr.grad().abs().max().item<double>());
    EXPECT_LE(max_diff(h.grad(), hr.grad()), 1e-5 * scale) << "chunk " << chunk;
  }
}

TEST(VocabParallelEntropy, LargeLogitsStayFinite) {
  const at::Tensor w = at::randn({20, 4}) * 50.0, h = at::randn({3, 4}) * 20.0;
  at::Tensor e = vocab_parallel_entropy(h, w, make_single_process_communicator(), 2);
  EXPECT_TRUE(at::isfinite(e).all().item<bool>()) << e;
  EXPECT_TRUE((e >= -1e-4).all().item<bool>()) << e;
}

TEST(VocabParallelMeanProbs, MeanOfSoftmaxPerGroup) {
  at::manual_seed(6);
  const at::Tensor w = at::randn({11, 5}), h = at::randn({8, 5});
  const at::Tensor group = at::tensor({0, 0, 2, -1, 2, 2, 0, -1}, at::kLong);
  at::Tensor ours = vocab_parallel_mean_probs(h, w, group, 4, make_single_process_communicator(), 3);
  ASSERT_EQ(ours.sizes(), at::IntArrayRef({4, 11}));
  const at::Tensor p = at::softmax(at::linear(h, w), -1);
  std::vector<at::Tensor> ref;
  for (int64_t gi = 0; gi < 4; ++gi) {
    at::Tensor rows = (group == gi).nonzero().squeeze(1);
    ref.push_back(rows.numel() ? p.index_select(0, rows).mean(0) : at::zeros({11}));
  }
  EXPECT_LE(max_diff(ours, at::stack(ref)), 1e-6);
  EXPECT_FALSE(ours.requires_grad());
}

TEST(VocabParallelEntropy, BadArgumentsThrow) {
  EXPECT_NE(error_of([] { vocab_parallel_entropy(at::randn({3}), at::randn({4, 3}), make_single_process_communicator(), 2); })
                .find("hidden must be [N, H]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              vocab_parallel_mean_probs(at::randn({3, 2}), at::randn({4, 2}), at::zeros({2}, at::kLong), 1,
                                        make_single_process_communicator(), 2);
            }).find("does not match"),
            std::string::npos);
}

}  // namespace
}  // namespace tlm
