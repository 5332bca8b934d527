// DecodeBatch (continuous batching) on the tiny random model: rows that join a batch already
// decoding, at different steps and with different prompt lengths, and rows that leave early
// (max_new_tokens, a stop id, remove()) each get exactly the tokens generate() gives their
// prompt alone; a sampled row draws what it draws alone with its seed.
#include <map>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/generate/decode_batch.h"
#include "engine/generate/generator.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

class DecodeBatchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tiny_ = new test::TinyLlama(test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat)); }
  static void TearDownTestSuite() {
    delete tiny_;
    tiny_ = nullptr;
  }
  const LlamaModel& model() const { return *tiny_->model; }
  static test::TinyLlama* tiny_;
};
test::TinyLlama* DecodeBatchTest::tiny_ = nullptr;

const std::vector<std::vector<int32_t>> kPrompts = {
    {3, 17, 5, 40, 22, 9, 1}, {8}, {30, 12, 44, 7, 2}, {0, 47, 23}, {5, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}};

std::vector<int32_t> alone(const LlamaModel& model, const std::vector<int32_t>& prompt, int64_t n,
                           const SamplingOptions& sampling = {}, std::vector<int32_t> stop = {}) {
  GenerationOptions o;
  o.max_new_tokens = n;
  o.sampling = sampling;
  o.stop_ids = std::move(stop);
  return generate(model, {prompt}, o)[0].ids;
}

// Runs the batch until it drains, joining kPrompts[i] before step join_at[i].
std::map<uint64_t, std::vector<int32_t>> run(DecodeBatch& batch, const std::vector<int64_t>& join_at,
                                             const std::vector<int64_t>& max_new,
                                             const std::vector<SamplingOptions>& sampling) {
  std::map<uint64_t, std::vector<int32_t>> out;
  auto take = [&](const DecodeEvent& e) {
    if (e.token >= 0) out[e.id].push_back(e.token);
  };
  for (int64_t step = 0; step < 64; ++step) {
    for (size_t i = 0; i < join_at.size(); ++i)
      if (join_at[i] == step) take(batch.join(i, kPrompts[i], max_new[i], sampling[i]));
    for (const DecodeEvent& e : batch.step()) take(e);
    if (batch.empty() && step > *std::max_element(join_at.begin(), join_at.end())) break;
  }
  return out;
}

TEST_F(DecodeBatchTest, RowsJoiningMidDecodeGetTheirAloneTokens) {
  DecodeBatch batch(model(), {});
  const std::vector<int64_t> join_at = {0, 0, 3, 5, 9}, max_new = {12, 4, 10, 1, 8};
  const std::vector<SamplingOptions> greedy(5);
  std::map<uint64_t, std::vector<int32_t>> got = run(batch, join_at, max_new, greedy);
  for (size_t i = 0; i < kPrompts.size(); ++i)
    EXPECT_EQ(got[i], alone(model(), kPrompts[i], max_new[i])) << "row " << i << " (joined at step " << join_at[i] << ")";
  EXPECT_TRUE(batch.empty());
}

TEST_F(DecodeBatchTest, SampledRowsDrawWhatTheyDrawAlone) {
  DecodeBatch batch(model(), {});
  std::vector<SamplingOptions> sampling(3);
  sampling[0] = {0.8, 0.9, 11};
  sampling[2] = {1.2, 1.0, 5};
  std::map<uint64_t, std::vector<int32_t>> got = run(batch, {0, 1, 2}, {9, 9, 9}, sampling);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(got[i], alone(model(), kPrompts[i], 9, sampling[i])) << "row " << i;
}

TEST_F(DecodeBatchTest, StopIdsAndRemoveEndRows) {
  const std::vector<int32_t> free_run = alone(model(), kPrompts[0], 10);
  const int32_t stop = free_run[3];
  DecodeBatch batch(model(), {stop});
  DecodeEvent first = batch.join(0, kPrompts[0], 10, {});
  std::vector<int32_t> row0 = {first.token};
  batch.join(1, kPrompts[2], 10, {});
  batch.remove(1);
  EXPECT_EQ(batch.size(), 1u);
  bool stopped = false;
  while (!batch.empty())
    for (const DecodeEvent& e : batch.step()) {
      if (e.token >= 0) row0.push_back(e.token);
      stopped |= e.stopped;
    }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(row0, alone(model(), kPrompts[0], 10, {}, {stop}));
}

}  // namespace
}  // namespace tlm
