// TestTimeLearner under mpirun against the same learner in one process: five online TLM
// steps with a global batch of 4 (the threshold at the median initial ce, so some samples
// are masked out and some kept; gradient clipping active), LoRA on every projection (column,
// row and, at TP = 4, replicated KV heads), for TP = 2 and DP = 2 on 2 ranks and TP = 4 and
// TP = 2 x DP = 2 on 4 ranks; on 3 ranks one step of the real default model at TP = 3.
// Tolerances: losses 1e-5 relative, adapters 1e-5 absolute (fp32). The default-model step
// uses the official settings (lr 5e-5, threshold 3, lambda 0.1): Adam's first update is
// lr * g / (|g| + eps), which turns the ~1e-9 absolute differences of reduction order in
// gradients near eps = 1e-8 into update differences up to ~lr / 40, so the adapter
// difference scales with lr (measured 4.9e-5 at lr 1e-3 over 184k LoRA B elements).
#include <filesystem>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "dist/shard.h"
#include "engine/generate/scoring.h"
#include "engine/learn/lora.h"
#include "engine/learn/methods.h"
#include "engine/learn/test_time_learner.h"
#include "engine/model/model_files.h"
#include "tests/dist/mpi_test_main.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

double max_adapter_diff(const std::map<std::string, at::Tensor>& a,
                        const std::map<std::string, at::Tensor>& b) {
  double worst = 0;
  for (const auto& [name, t] : a) {
    EXPECT_TRUE(b.count(name)) << name;
    worst = std::max(worst, (t - b.at(name)).abs().max().item<double>());
  }
  return worst;
}

template <typename T>
std::vector<T> block(const std::vector<T>& batch, const ProcessGrid& g) {
  const ShardRange r = balanced_range(static_cast<int64_t>(batch.size()), g.dp_rank, g.dp_size);
  return {batch.begin() + r.begin, batch.begin() + r.end};
}

TEST(TestTimeLearnerMpi, FiveOnlineStepsEqualOneProcess) {
  if (test::world_size() == 3) GTEST_SKIP() << "tiny model layouts run on 2 and 4 ranks";
  const test::TinyLlamaSpec spec;
  const auto seqs = test::random_token_sequences(20, spec.vocab_size, 5, 5);
  LoraConfig lc;
  lc.targets = lora_target_names();
  lc.rank = 4;
  StepOptions step;
  step.max_grad_norm = 1.0;
  const double lr = 1e-2;
  for (auto [tp, dp] : test::test_layouts(test::world_size())) {
    test::TinyLlama ref = test::load_tiny_llama(spec, at::kFloat);
    std::vector<double> ce0 = mean_token_nll(*ref.model, seqs, 8, 0);
    std::nth_element(ce0.begin(), ce0.begin() + 10, ce0.end());
    TlmObjectiveOptions objective;
    objective.threshold = ce0[10];
    LoraAdapters ref_lora(*ref.model, lc);
    TestTimeLearner ref_learner(*ref.model, ref_lora, objective, step, AdamWOptions{});

    ProcessGrid g = test::mpi_grid(tp, dp);
    LlamaModel model(ref.config, *ref.weights, g.tp, at::kFloat);
    LoraAdapters lora(model, lc);
    TestTimeLearner learner(model, lora, objective, step, AdamWOptions{}, g.dp);
    int selected = 0, masked = 0;
    double worst_loss = 0;
    for (int k = 0; k < 5; ++k) {
      const std::vector<std::vector<int32_t>> batch(seqs.begin() + 4 * k, seqs.begin() + 4 * k + 4);
      const StepRecord want = ref_learner.train_step(batch, lr);
      const StepRecord got = learner.train_step(block(batch, g), lr);
      EXPECT_EQ(got.selected, want.selected) << "step " << k;
      EXPECT_EQ(got.tokens, want.tokens);
      EXPECT_EQ(got.updated, want.updated);
      const double rel = std::abs(got.loss - want.loss) / std::max(1e-30, std::abs(want.loss));
      worst_loss = std::max(worst_loss, rel);
      EXPECT_LE(rel, 1e-5) << "step " << k << ": " << got.loss << " vs " << want.loss;
      EXPECT_NEAR(got.grad_norm, want.grad_norm, 1e-5 * want.grad_norm) << "step " << k;
      ASSERT_EQ(got.current_ce.size(), want.current_ce.size());
      for (size_t i = 0; i < got.current_ce.size(); ++i)
        EXPECT_NEAR(got.current_ce[i], want.current_ce[i], 1e-5);
      for (bool s : want.selected) (s ? selected : masked)++;
    }
    EXPECT_GT(selected, 0);
    EXPECT_GT(masked, 0);
    const double adapter_diff = max_adapter_diff(lora.full_state(), ref_lora.full_state());
    EXPECT_LE(adapter_diff, 1e-5) << "tp " << tp << " dp " << dp;
    if (g.is_root())
      std::printf("[parity] 5 TLM steps tp %d x dp %d (%d selected, %d masked): loss max rel diff %.3e, "
                  "adapter max abs diff %.3e\n", tp, dp, selected, masked, worst_loss, adapter_diff);
  }
}

// Tent, EATA, COME (on Tent) and the SyTTA-style objective through the same seam: five steps
// under every layout equal one process. EATA's margins are placed between the samples' values
// so that both filters keep some and drop some (the entropy margin at the median entropy; the
// redundancy margin at the median cosine of step 2, read off a first reference run), and its
// moving average is reduced over DP and its cosines over TP. SyTTA scores the last 3 tokens of
// each sequence as its "generated" answer (entropy and reverse KL to the base, vocab-parallel
// under TP; the base forward with adapters off), COME its opinion entropy over every position.
// COME steps at lr 1e-3, not 1e-2: its gradients are small (the uncertainty mass K = V holds
// most of the opinion), so many sit near Adam's eps, where reduction-order differences of
// ~1e-9 become update differences of up to lr / 40 (measured 1.9e-5 at lr 1e-2, TP 2 x DP 2).
TEST(TestTimeLearnerMpi, EntropyFamilyStepsEqualOneProcess) {
  if (test::world_size() == 3) GTEST_SKIP() << "tiny model layouts run on 2 and 4 ranks";
  const test::TinyLlamaSpec spec;
  const auto seqs = test::random_token_sequences(20, spec.vocab_size, 6, 5);
  LoraConfig lc;
  lc.targets = lora_target_names();
  lc.rank = 4;
  const auto reference_prompts = test::random_token_sequences(3, spec.vocab_size, 31, 6);
  auto run = [&](const MethodSpec& method, LlamaModel& model, const CommunicatorPtr& dp, const ProcessGrid* g,
                 bool fisher = false) {
    const double lr = method.name == "come" ? 1e-3 : 1e-2;
    LoraAdapters lora(model, lc);
    // EATA steps only when it keeps a sample (its official code's rule, and its recipe's).
    StepOptions step;
    step.skip_unselected = method.name == "eata";
    TestTimeLearner learner(model, lora, make_objective(method, model), step, AdamWOptions{}, dp);
    // EATA's Fisher regulariser: F from TP-reduced gradients, its gradient added after reduction.
    if (fisher) learner.set_regulariser(std::make_shared<FisherRegulariser>(model, lora, reference_prompts, 100.0));
    std::vector<StepRecord> records;
    for (int k = 0; k < 5; ++k) {
      const std::vector<std::vector<int32_t>> batch(seqs.begin() + 4 * k, seqs.begin() + 4 * k + 4);
      std::vector<int64_t> from, to;
      if (method.name == "sytta") {
        for (const auto& s : batch) {
          to.push_back(static_cast<int64_t>(s.size()) - 1);
          from.push_back(to.back() - 3);
        }
      }
      records.push_back(g ? learner.train_step(block(batch, *g), lr, {}, block(from, *g), block(to, *g))
                          : learner.train_step(batch, lr, {}, from, to));
    }
    return std::make_pair(records, lora.full_state());
  };
  test::TinyLlama ref = test::load_tiny_llama(spec, at::kFloat);
  MethodSpec eata;
  eata.name = "eata";
  eata.eata.redundancy_margin = 2.0;  // first run: no redundancy filter, to read the cosines
  {
    MethodSpec tent;
    tent.name = "tent";
    std::vector<double> entropies;
    for (const StepRecord& r : run(tent, *ref.model, nullptr, nullptr).first)
      entropies.insert(entropies.end(), r.extra.at("entropy").begin(), r.extra.at("entropy").end());
    // Midpoints between neighbouring values: no sample sits on a margin, where a last-bit
    // difference of reduction order could flip it.
    std::sort(entropies.begin(), entropies.end());
    eata.eata.entropy_margin = (entropies[9] + entropies[10]) / 2 / std::log(static_cast<double>(spec.vocab_size));
    std::vector<double> cos = run(eata, *ref.model, nullptr, nullptr).first[1].extra.at("redundancy_cos");
    std::sort(cos.begin(), cos.end());
    eata.eata.redundancy_margin = (cos[1] + cos[2]) / 2;
  }
  for (const std::string name : {"tent", "eata", "eata-fisher", "come", "sytta"}) {
    const bool fisher = name == "eata-fisher";
    MethodSpec method = name.rfind("eata", 0) == 0 ? eata : MethodSpec{};
    method.name = fisher ? "eata" : name;
    const auto [want, want_adapter] = run(method, *ref.model, nullptr, nullptr, fisher);
    if (fisher) EXPECT_GT(want.back().regulariser, 0.0) << "the Fisher term is zero: the test would not see it";
    int kept = 0, dropped = 0;
    for (const StepRecord& r : want)
      for (bool s : r.selected) (s ? kept : dropped)++;
    if (name == "eata") {
      EXPECT_GT(kept, 0);
      EXPECT_GT(dropped, 0);
    }
    for (auto [tp, dp] : test::test_layouts(test::world_size())) {
      ProcessGrid g = test::mpi_grid(tp, dp);
      LlamaModel model(ref.config, *ref.weights, g.tp, at::kFloat);
      const auto [got, got_adapter] = run(method, model, g.dp, &g, fisher);
      double worst = 0;
      for (size_t k = 0; k < got.size(); ++k) {
        EXPECT_EQ(got[k].selected, want[k].selected) << name << " step " << k;
        const double rel = std::abs(got[k].loss - want[k].loss) / std::max(1e-30, std::abs(want[k].loss));
        worst = std::max(worst, rel);
        EXPECT_LE(rel, 1e-5) << name << " step " << k << ": " << got[k].loss << " vs " << want[k].loss;
        EXPECT_NEAR(got[k].regulariser, want[k].regulariser, 1e-5 * std::abs(want[k].regulariser)) << name << " step " << k;
        for (const auto& [stat, values] : want[k].extra) {
          ASSERT_EQ(got[k].extra.at(stat).size(), values.size()) << stat;
          for (size_t i = 0; i < values.size(); ++i) EXPECT_NEAR(got[k].extra.at(stat)[i], values[i], 1e-5) << stat;
        }
      }
      const double adapter_diff = max_adapter_diff(got_adapter, want_adapter);
      EXPECT_LE(adapter_diff, 1e-5) << name << " tp " << tp << " dp " << dp;
      if (g.is_root())
        std::printf("[parity] 5 %s steps tp %d x dp %d (%d kept, %d dropped): loss max rel diff %.3e, adapter max abs "
                    "diff %.3e\n", name.c_str(), tp, dp, kept, dropped, worst, adapter_diff);
    }
  }
}

TEST(TestTimeLearnerMpi, DefaultModelOneStepAtTp3) {
  const char* path = std::getenv("TLM_DEFAULT_MODEL");
  if (test::world_size() != 3) GTEST_SKIP() << "runs on 3 ranks (the default model's 9 heads)";
  if (!path || !*path || !std::filesystem::exists(path))
    GTEST_SKIP() << "the default model is not installed (TLM_DEFAULT_MODEL=" << (path ? path : "") << ")";
  ModelFiles files = open_model_files(path);
  std::vector<std::vector<int32_t>> batch;
  for (const char* text : {"Which cover crops fix nitrogen before a wheat season?",
                           "How do bond prices respond when interest rates rise?"})
    batch.push_back(files.tokenizer->encode(text, false));
  LoraConfig lc;                  // q_proj, v_proj, r 8, alpha 16
  TlmObjectiveOptions objective;  // threshold 3, lambda 0.1
  const double lr = 5e-5;
  LlamaModel single(files.config, *files.weights, make_single_process_communicator(), at::kFloat);
  LoraAdapters ref_lora(single, lc);
  TestTimeLearner ref_learner(single, ref_lora, objective, StepOptions{}, AdamWOptions{});
  const StepRecord want = ref_learner.train_step(batch, lr);

  ProcessGrid g = test::mpi_grid(3, 1);
  LlamaModel sharded(files.config, *files.weights, g.tp, at::kFloat);
  LoraAdapters lora(sharded, lc);
  TestTimeLearner learner(sharded, lora, objective, StepOptions{}, AdamWOptions{}, g.dp);
  const StepRecord got = learner.train_step(batch, lr);
  EXPECT_EQ(got.selected, want.selected);
  EXPECT_TRUE(got.updated);
  EXPECT_LE(std::abs(got.loss - want.loss), 1e-5 * std::abs(want.loss));
  const double diff = max_adapter_diff(lora.full_state(), ref_lora.full_state());
  EXPECT_LE(diff, 1e-5);
  if (g.is_root())
    std::printf("[parity] default model one TLM step at tp 3: loss %.6f vs %.6f, adapter max abs diff %.3e\n",
                got.loss, want.loss, diff);
}

}  // namespace
}  // namespace tlm
