// mean_token_nll and continuation_nll on a tiny random model written by the test, against
// the log-softmax of the model's own full logits, one sequence at a time.
//
// Tolerance: 1e-5 absolute on NLLs of a few units (float32 forward passes of different
// batch layouts reduce in different orders).
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "engine/common/error.h"
#include "engine/generate/scoring.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

constexpr double kAtol = 1e-5;

// -log p(seq[t+1] | seq[<=t]) for every t, from one unpadded forward.
std::vector<double> token_nll(const LlamaModel& model, const std::vector<int32_t>& seq) {
  c10::InferenceMode guard;
  const int64_t T = static_cast<int64_t>(seq.size());
  at::Tensor ids = at::tensor(std::vector<int64_t>(seq.begin(), seq.end()), at::kLong).view({1, T});
  at::Tensor logp = model.logits(ids, at::ones({1, T}, at::kLong))[0].to(at::kDouble).log_softmax(-1);
  std::vector<double> out;
  for (int64_t t = 0; t + 1 < T; ++t) out.push_back(-logp[t][seq[static_cast<size_t>(t + 1)]].item<double>());
  return out;
}

class Scoring : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tiny_ = new test::TinyLlama(test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat));
  }
  static void TearDownTestSuite() {
    delete tiny_;
    tiny_ = nullptr;
  }
  const LlamaModel& model() const { return *tiny_->model; }
  static test::TinyLlama* tiny_;
};
test::TinyLlama* Scoring::tiny_ = nullptr;

const std::vector<std::vector<int32_t>> kSequences = {
    {3, 17, 5, 40, 22, 9, 1}, {8, 8}, {30, 12, 44, 7, 2}, {0, 47, 23, 11, 6, 35, 19, 4, 28}};

TEST_F(Scoring, MeanTokenNllEqualsLogSoftmaxOfLogits) {
  for (int64_t batch : {1, 2, 4, 16}) {
    std::vector<double> ce = mean_token_nll(model(), kSequences, batch, /*pad_id=*/0);
    ASSERT_EQ(ce.size(), kSequences.size());
    for (size_t i = 0; i < kSequences.size(); ++i) {
      std::vector<double> nll = token_nll(model(), kSequences[i]);
      double mean = 0.0;
      for (double v : nll) mean += v / static_cast<double>(nll.size());
      EXPECT_NEAR(ce[i], mean, kAtol) << "batch " << batch << " sequence " << i;
      EXPECT_GT(ce[i], 0.0);
    }
  }
}

TEST_F(Scoring, PadIdDoesNotMatter) {
  std::vector<double> a = mean_token_nll(model(), kSequences, 4, 0);
  std::vector<double> b = mean_token_nll(model(), kSequences, 4, 47);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], kAtol) << i;
}

TEST_F(Scoring, MeanTokenNllErrors) {
  EXPECT_THROW(mean_token_nll(model(), {{1, 2}, {5}}, 4, 0), Error);
  EXPECT_THROW(mean_token_nll(model(), kSequences, 0, 0), Error);
  EXPECT_TRUE(mean_token_nll(model(), {}, 4, 0).empty());
}

TEST_F(Scoring, ContinuationNllCountsOnlyTheContinuation) {
  const std::vector<std::vector<int32_t>> prompts = {{3, 17, 5}, {9}, {30, 12, 44, 7}, {4, 4}};
  const std::vector<std::vector<int32_t>> answers = {{40, 22}, {1, 2, 3}, {}, {46}};
  double sum = 0.0;
  int64_t tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (answers[i].empty()) continue;
    std::vector<int32_t> seq = prompts[i];
    seq.insert(seq.end(), answers[i].begin(), answers[i].end());
    std::vector<double> nll = token_nll(model(), seq);
    // Position t predicts token t+1: the continuation starts at t = prompt length - 1.
    for (size_t t = prompts[i].size() - 1; t < nll.size(); ++t) sum += nll[t];
    tokens += static_cast<int64_t>(answers[i].size());
  }
  for (int64_t batch : {1, 3, 8}) {
    ContinuationNll got = continuation_nll(model(), prompts, answers, batch, 0);
    EXPECT_EQ(got.tokens, tokens) << batch;
    EXPECT_EQ(tokens, 6);
    EXPECT_NEAR(got.nll_sum, sum, 4 * kAtol) << batch;
    EXPECT_NEAR(got.per_token(), sum / 6.0, kAtol) << batch;
  }
  ContinuationNll none = continuation_nll(model(), {{1, 2}}, {{}}, 2, 0);
  EXPECT_EQ(none.tokens, 0);
  EXPECT_EQ(none.per_token(), 0.0);
  EXPECT_THROW(continuation_nll(model(), {{1, 2}}, {}, 2, 0), Error);
}

}  // namespace
}  // namespace tlm
