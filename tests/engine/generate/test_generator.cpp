// generate() on a tiny random model written by the test: greedy decoding through the KV
// cache equals recomputing the whole sequence each step, stop ids end a row, max_new_tokens
// is respected, and a left-padded batch gives exactly the ids each prompt gives alone.
#include <algorithm>
#include <cstdio>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "engine/common/error.h"
#include "engine/generate/generator.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

class Generator : public ::testing::Test {
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
test::TinyLlama* Generator::tiny_ = nullptr;

// Greedy continuation by full recomputation (no cache, no padding). `min_gap` receives the
// smallest top-1 / top-2 logit margin met on the way.
std::vector<int32_t> greedy_reference(const LlamaModel& model, std::vector<int32_t> seq, int64_t n,
                                      double* min_gap = nullptr) {
  c10::InferenceMode guard;
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t T = static_cast<int64_t>(seq.size());
    at::Tensor ids = at::tensor(std::vector<int64_t>(seq.begin(), seq.end()), at::kLong).view({1, T});
    at::Tensor logits = model.logits(ids, at::ones({1, T}, at::kLong));
    if (min_gap) {
      at::Tensor top = std::get<0>(logits[0][T - 1].topk(2));
      *min_gap = std::min(*min_gap, (top[0] - top[1]).item<double>());
    }
    const auto next = static_cast<int32_t>(logits[0][T - 1].argmax().item<int64_t>());
    out.push_back(next);
    seq.push_back(next);
  }
  return out;
}

const std::vector<std::vector<int32_t>> kPrompts = {
    {3, 17, 5, 40, 22, 9, 1}, {8}, {30, 12, 44, 7, 2}, {0, 47, 23}};

TEST_F(Generator, GreedyEqualsFullRecomputation) {
  GenerationOptions o;
  o.max_new_tokens = 12;
  double min_gap = 1e9;
  for (const auto& p : kPrompts) {
    std::vector<Generation> g = generate(model(), {p}, o);
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(g[0].ids, greedy_reference(model(), p, 12, &min_gap));
    EXPECT_FALSE(g[0].stopped);
  }
  // Exact id comparisons here and below are only meaningful (and only robust to float32
  // reordering, ~1e-6) when no greedy choice is a near-tie.
  std::printf("[measured] smallest top-1/top-2 logit margin on the greedy paths: %.3g\n", min_gap);
  EXPECT_GT(min_gap, 1e-3);
}

TEST_F(Generator, RespectsMaxNewTokens) {
  for (int64_t n : {1, 2, 7}) {
    GenerationOptions o;
    o.max_new_tokens = n;
    std::vector<Generation> g = generate(model(), kPrompts, o);
    ASSERT_EQ(g.size(), kPrompts.size());
    for (const Generation& r : g) {
      EXPECT_EQ(static_cast<int64_t>(r.ids.size()), n);
      EXPECT_FALSE(r.stopped);
    }
  }
  GenerationOptions zero;
  zero.max_new_tokens = 0;
  std::vector<Generation> g = generate(model(), kPrompts, zero);
  ASSERT_EQ(g.size(), kPrompts.size());
  for (const Generation& r : g) EXPECT_TRUE(r.ids.empty());
  EXPECT_TRUE(generate(model(), {}, GenerationOptions{}).empty());
}

TEST_F(Generator, StopsAtAStopIdAndReportsIt) {
  const std::vector<int32_t>& prompt = kPrompts[0];
  const std::vector<int32_t> free_run = greedy_reference(model(), prompt, 12);
  // The first token that did not occur before it: stopping on it must cut exactly there.
  size_t k = 1;
  while (k < free_run.size() &&
         std::find(free_run.begin(), free_run.begin() + static_cast<long>(k), free_run[k]) !=
             free_run.begin() + static_cast<long>(k))
    ++k;
  ASSERT_LT(k, free_run.size()) << "fixture: the free run repeats one token only";
  GenerationOptions o;
  o.max_new_tokens = 12;
  o.stop_ids = {free_run[k], 47 /* an id the run may never produce */};
  std::vector<std::pair<size_t, int32_t>> seen;
  std::vector<Generation> g =
      generate(model(), {prompt}, o, [&](size_t row, int32_t tok) { seen.emplace_back(row, tok); });
  ASSERT_EQ(g.size(), 1u);
  EXPECT_TRUE(g[0].stopped);
  EXPECT_EQ(g[0].ids, std::vector<int32_t>(free_run.begin(), free_run.begin() + static_cast<long>(k)));
  ASSERT_EQ(seen.size(), k) << "the callback sees every new token but not the stop token";
  for (size_t i = 0; i < k; ++i) {
    EXPECT_EQ(seen[i].first, 0u);
    EXPECT_EQ(seen[i].second, free_run[i]);
  }

  // Stopping on the very first token gives an empty, stopped generation.
  o.stop_ids = {free_run[0]};
  g = generate(model(), {prompt}, o);
  EXPECT_TRUE(g[0].stopped);
  EXPECT_TRUE(g[0].ids.empty());
}

TEST_F(Generator, BatchEqualsOneByOne) {
  // Stop on a token some rows produce, so rows finish at different steps while the batch
  // keeps decoding.
  GenerationOptions free_opts;
  free_opts.max_new_tokens = 10;
  std::vector<std::vector<int32_t>> alone_free;
  for (const auto& p : kPrompts) alone_free.push_back(generate(model(), {p}, free_opts)[0].ids);
  GenerationOptions o = free_opts;
  o.stop_ids = {alone_free[0][3]};
  o.pad_id = 5;  // the pad id must not matter either

  std::vector<Generation> alone;
  for (const auto& p : kPrompts) alone.push_back(generate(model(), {p}, o)[0]);
  std::vector<Generation> batch = generate(model(), kPrompts, o);
  ASSERT_EQ(batch.size(), kPrompts.size());
  int stopped = 0;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    EXPECT_EQ(batch[i].ids, alone[i].ids) << "prompt " << i;
    EXPECT_EQ(batch[i].stopped, alone[i].stopped) << "prompt " << i;
    stopped += batch[i].stopped ? 1 : 0;
  }
  EXPECT_GE(stopped, 1);
  // The batch in another order gives the same rows.
  std::vector<std::vector<int32_t>> reversed(kPrompts.rbegin(), kPrompts.rend());
  std::vector<Generation> rev = generate(model(), reversed, o);
  for (size_t i = 0; i < kPrompts.size(); ++i)
    EXPECT_EQ(rev[kPrompts.size() - 1 - i].ids, alone[i].ids) << "prompt " << i;
}

TEST_F(Generator, SeededSamplingRepeats) {
  GenerationOptions o;
  o.max_new_tokens = 8;
  o.sampling.temperature = 1.5;
  o.sampling.seed = 21;
  std::vector<Generation> a = generate(model(), kPrompts, o);
  std::vector<Generation> b = generate(model(), kPrompts, o);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].ids, b[i].ids);
  o.sampling.seed = 22;
  std::vector<Generation> c = generate(model(), kPrompts, o);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) differs = differs || a[i].ids != c[i].ids;
  EXPECT_TRUE(differs);
}

TEST_F(Generator, EmptyPromptThrows) {
  EXPECT_THROW(generate(model(), {{1, 2}, {}}, GenerationOptions{}), Error);
}

}  // namespace
}  // namespace tlm
