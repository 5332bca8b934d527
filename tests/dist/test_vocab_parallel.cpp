// The vocabulary-parallel embedding, logits and chunked token log-likelihood on the
// single-process communicator, against the plain ATen expressions.
//
// Tolerances: fp32 forward and backward 1e-6 absolute (the chunked code and
// log_softmax + gather reduce in a different order). bf16: the reference is autograd through
// the same bf16 logits (at::linear in bf16, then fp32 log_softmax): forward 1e-5 absolute;
// the backward rounds dlogp/dlogits to bf16 before the bf16 matmul, as autograd does, and
// agrees to 1e-2 absolute + 1e-2 relative (about one bf16 ulp of gradients of size ~1).
#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dist/communicator.h"
#include "dist/vocab_parallel.h"
#include "engine/common/error.h"
#include "tests/dist/dist_testing.h"

namespace tlm {
namespace {

using test::error_of;
using test::max_diff;

TEST(VocabParallelEmbedding, EqualsEmbedding) {
  at::manual_seed(1);
  at::Tensor table = at::randn({11, 5});
  VocabParallelEmbedding emb(make_single_process_communicator(), table, 11);
  EXPECT_EQ(emb.vocab_size(), 11);
  EXPECT_EQ(emb.vocab_shard().begin, 0);
  EXPECT_EQ(emb.vocab_shard().end, 11);
  at::Tensor ids = at::tensor({0, 10, 3, 3, 7, 1}, at::kLong).view({2, 3});
  EXPECT_TRUE(at::equal(emb.forward(ids), at::embedding(table, ids)));
  EXPECT_EQ(emb.forward(ids).sizes(), at::IntArrayRef({2, 3, 5}));
  // Gradients reach the table as through at::embedding.
  at::Tensor t = table.clone().set_requires_grad(true);
  VocabParallelEmbedding trainable(make_single_process_communicator(), t, 11);
  at::Tensor g = at::randn({2, 3, 5});
  (trainable.forward(ids) * g).sum().backward();
  at::Tensor tr = table.clone().set_requires_grad(true);
  (at::embedding(tr, ids) * g).sum().backward();
  EXPECT_LE(max_diff(t.grad(), tr.grad()), 1e-6);
}

TEST(VocabParallelEmbedding, WrongTableShapeThrows) {
  const std::string m = error_of([] {
    VocabParallelEmbedding(make_single_process_communicator(), at::randn({10, 5}), 11);
  });
  EXPECT_NE(m.find("[10, 5]"), std::string::npos) << m;
  EXPECT_NE(m.find("[11, H]"), std::string::npos) << m;
}

TEST(VocabParallelLogits, EqualsLinear) {
  at::manual_seed(2);
  at::Tensor w = at::randn({13, 6}), h = at::randn({4, 6});
  at::Tensor logits = vocab_parallel_logits(h, w, make_single_process_communicator());
  EXPECT_EQ(logits.sizes(), at::IntArrayRef({4, 13}));
  EXPECT_LE(max_diff(logits, at::linear(h, w)), 1e-6);
}

// log_softmax(h W^T)[target] with -100 rows = 0, by autograd-able ATen ops.
at::Tensor reference_logp(const at::Tensor& h, const at::Tensor& w, const at::Tensor& targets) {
  at::Tensor logp = at::linear(h, w).to(at::kFloat).log_softmax(-1);
  at::Tensor ignore = targets < 0;
  at::Tensor picked = logp.gather(1, targets.clamp_min(0).unsqueeze(1)).squeeze(1);
  return picked.masked_fill(ignore, 0.0);
}

struct Case {
  at::ScalarType dtype;
  double fwd_atol;
  double bwd_atol;
  double bwd_rtol;
};

void check_log_likelihood(const Case& c) {
  at::manual_seed(3);
  const int64_t N = 7, H = 5, V = 11;
  at::Tensor w = (at::randn({V, H}) * 0.8).to(c.dtype);
  at::Tensor h0 = at::randn({N, H}).to(c.dtype);
  at::Tensor targets = at::tensor({3, -100, 10, 0, 5, -100, 7}, at::kLong);
  at::Tensor g = at::randn({N});

  at::Tensor hr = h0.clone().set_requires_grad(true);
  at::Tensor ref = reference_logp(hr, w, targets);
  (ref * g).sum().backward();

  CommunicatorPtr comm = make_single_process_communicator();
  double worst_fwd = 0.0, worst_bwd = 0.0;
  for (int64_t chunk : {int64_t{1}, int64_t{3}, N, N + 5}) {
    const std::string what = std::string(c10::toString(c.dtype)) + " chunk " + std::to_string(chunk);
    at::Tensor h = h0.clone().set_requires_grad(true);
    at::Tensor logp = vocab_parallel_token_log_likelihood(h, w, targets, comm, chunk);
    EXPECT_EQ(logp.scalar_type(), at::kFloat) << what;
    ASSERT_EQ(logp.sizes(), at::IntArrayRef({N})) << what;
    EXPECT_LE(max_diff(logp, ref), c.fwd_atol) << what;
    EXPECT_EQ(logp[1].item<float>(), 0.0f) << what;
    EXPECT_EQ(logp[5].item<float>(), 0.0f) << what;
    EXPECT_TRUE((logp < 0).logical_or(targets < 0).all().item<bool>()) << what;

    (logp * g).sum().backward();
    ASSERT_TRUE(h.grad().defined()) << what;
    EXPECT_EQ(h.grad().scalar_type(), c.dtype) << what;
    // Ignored rows receive no gradient at all.
    EXPECT_TRUE(at::equal(h.grad()[1], at::zeros({H}, c.dtype))) << what;
    EXPECT_TRUE(at::equal(h.grad()[5], at::zeros({H}, c.dtype))) << what;
    EXPECT_TRUE(at::allclose(h.grad().to(at::kDouble), hr.grad().to(at::kDouble), c.bwd_rtol,
                             c.bwd_atol))
        << what << " max diff " << max_diff(h.grad(), hr.grad());
    worst_fwd = std::max(worst_fwd, max_diff(logp, ref));
    worst_bwd = std::max(worst_bwd, max_diff(h.grad(), hr.grad()));
  }
  std::printf("[measured] %s: max |logp - ref| %.3g, max |grad - ref| %.3g\n",
              c10::toString(c.dtype), worst_fwd, worst_bwd);
}

TEST(VocabParallelLogLikelihood, Fp32MatchesLogSoftmaxGather) {
  check_log_likelihood({at::kFloat, 1e-6, 1e-6, 0.0});
}

TEST(VocabParallelLogLikelihood, Bf16MatchesLogSoftmaxGather) {
  check_log_likelihood({at::kBFloat16, 1e-5, 1e-2, 1e-2});
}

TEST(VocabParallelLogLikelihood, LargeLogitsStayFinite) {
  // Logits of several hundred: exp overflows unless the row max is subtracted first.
  at::manual_seed(4);
  at::Tensor w = at::randn({9, 4}) * 100.0, h = at::randn({5, 4}).set_requires_grad(true);
  at::Tensor targets = at::tensor({0, 1, 2, 3, 8}, at::kLong);
  at::Tensor logp = vocab_parallel_token_log_likelihood(h, w, targets,
                                                        make_single_process_communicator(), 2);
  EXPECT_TRUE(at::isfinite(logp).all().item<bool>());
  EXPECT_LE(max_diff(logp, reference_logp(h.detach(), w, targets)), 1e-4);  // |logp| ~ 1e2
  logp.sum().backward();
  EXPECT_TRUE(at::isfinite(h.grad()).all().item<bool>());
}

TEST(VocabParallelLogLikelihood, AllIgnoredAndInt32Targets) {
  at::manual_seed(5);
  at::Tensor w = at::randn({6, 3}), h = at::randn({4, 3}).set_requires_grad(true);
  CommunicatorPtr comm = make_single_process_communicator();
  at::Tensor none = at::full({4}, -100, at::kLong);
  at::Tensor logp = vocab_parallel_token_log_likelihood(h, w, none, comm, 3);
  EXPECT_TRUE(at::equal(logp, at::zeros({4})));
  logp.sum().backward();
  EXPECT_TRUE(at::equal(h.grad(), at::zeros({4, 3})));

  at::Tensor t32 = at::tensor({1, 0, 5, 2}, at::kInt);
  at::Tensor got = vocab_parallel_token_log_likelihood(h.detach(), w, t32, comm, 2);
  EXPECT_LE(max_diff(got, reference_logp(h.detach(), w, t32.to(at::kLong))), 1e-6);
}

TEST(VocabParallelLogLikelihood, BadArgumentsThrow) {
  CommunicatorPtr comm = make_single_process_communicator();
  at::Tensor w = at::randn({6, 3});
  std::string m = error_of([&] {
    vocab_parallel_token_log_likelihood(at::randn({4, 3}), w, at::zeros({5}, at::kLong), comm, 2);
  });
  EXPECT_NE(m.find("[4, 3]"), std::string::npos) << m;
  EXPECT_NE(m.find("[5]"), std::string::npos) << m;
  m = error_of([&] {
    vocab_parallel_token_log_likelihood(at::randn({2, 2, 3}), w, at::zeros({2}, at::kLong), comm, 2);
  });
  EXPECT_FALSE(m.empty());
  m = error_of([&] {
    vocab_parallel_token_log_likelihood(at::randn({4, 3}), w, at::zeros({4}, at::kLong), comm, 0);
  });
  EXPECT_NE(m.find("chunk_rows"), std::string::npos) << m;
}

}  // namespace
}  // namespace tlm
