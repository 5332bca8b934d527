// The vocab-parallel row reductions on the single-process communicator against plain ATen
// expressions with autograd: log-sum-exp, norm, softmax entropy, KL to a reference and COME's
// opinion entropy (as its official code writes it), values and gradients. Their TP
// equality is checked end to end by learn.test_time_learner_mpi (COME and SyTTA steps).
// Tolerances (fp32): 1e-5 absolute on values of order 1-10, gradients 1e-5 of the largest entry.
#include <algorithm>
#include <functional>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/communicator.h"
#include "dist/vocab_parallel_rows.h"
#include "tests/dist/dist_testing.h"

namespace tlm {
namespace {

using test::max_diff;

using RowFn = std::function<at::Tensor(const at::Tensor&)>;

void expect_same(const RowFn& ours, const RowFn& ref, const at::Tensor& z0, const char* what) {
  at::Tensor g = at::randn({z0.size(0)});
  at::Tensor z = z0.clone().set_requires_grad(true), zr = z0.clone().set_requires_grad(true);
  const at::Tensor a = ours(z), b = ref(zr);
  (a * g).sum().backward();
  (b * g).sum().backward();
  EXPECT_LE(max_diff(a, b), 1e-5) << what;
  const double scale = std::max(1e-3, zr.grad().abs().max().item<double>());
  EXPECT_GT(zr.grad().abs().max().item<double>(), 1e-4) << what << ": the gradient is ~0";
  EXPECT_LE(max_diff(z.grad(), zr.grad()), 1e-5 * scale) << what;
}

TEST(VocabParallelRows, MatchAtenWithGradients) {
  at::manual_seed(11);
  const CommunicatorPtr tp = make_single_process_communicator();
  const at::Tensor z0 = at::randn({6, 41}) * 3.0, y = at::randn({6, 41}) * 2.0;
  expect_same([&](const at::Tensor& z) { return vocab_parallel_logsumexp(z, tp); },
              [](const at::Tensor& z) { return at::logsumexp(z, -1); }, z0, "logsumexp");
  expect_same([&](const at::Tensor& z) { return vocab_parallel_norm(z, tp); },
              [](const at::Tensor& z) { return z.norm(2, -1); }, z0, "norm");
  expect_same([&](const at::Tensor& z) { return vocab_parallel_entropy_of_logits(z, tp); },
              [](const at::Tensor& z) { return -(at::softmax(z, -1) * at::log_softmax(z, -1)).sum(-1); }, z0, "entropy");
  expect_same([&](const at::Tensor& z) { return vocab_parallel_kl(z, y, tp); },
              [&](const at::Tensor& z) {
                const at::Tensor logp = at::log_softmax(z, -1);
                return (logp.exp() * (logp - at::log_softmax(y, -1))).sum(-1);
              }, z0, "reverse KL");
  for (double k : {41.0, 1000.0, 0.5}) {
    expect_same([&](const at::Tensor& z) { return vocab_parallel_opinion_entropy(z, tp, k); },
                [&](const at::Tensor& x0) {
                  const at::Tensor n = x0.norm(2, -1, true);
                  const at::Tensor x = x0 / n * n.detach();
                  const at::Tensor s = x.exp().sum(-1, true) + k;
                  const at::Tensor p = at::cat({x.exp() / s, at::full_like(s, k) / s}, -1) + 1e-7;
                  return -(p * p.log()).sum(-1);
                }, z0, "opinion entropy");
  }
}

TEST(VocabParallelRows, OpinionEntropyDoesNotOverflowOnLargeLogits) {
  const at::Tensor z = at::full({2, 5}, 120.0);  // e^120 overflows fp32
  const at::Tensor h = vocab_parallel_opinion_entropy(z, make_single_process_communicator(), 5.0);
  EXPECT_TRUE(at::isfinite(h).all().item<bool>());
  EXPECT_NEAR(h[0].item<double>(), std::log(5.0), 1e-4);  // five equal beliefs, u ~ 0
}

}  // namespace
}  // namespace tlm
