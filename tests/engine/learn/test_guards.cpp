// Collapse guards on a tiny random model written by the test, with online TLM steps (every
// sample selected) on an adversarial stream: one prompt repeated, at a large lr, so that the
// adapter overfits it and the NLL of a general probe set (other random prompts) rises.
//   probe:   trips (at least one rollback); every rollback restores, bitwise, the adapter and
//            optimiser state of the last probe that passed (the fresh state before the first);
//   periodic reset and loss floor: the adapter is bitwise fresh right after the event.
#include <cstring>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/learn/lora.h"
#include "engine/learn/guards.h"
#include "engine/learn/test_time_learner.h"
#include "tests/engine/learn/bitwise.h"
#include "tests/engine/model/tiny_llama.h"

namespace tlm {
namespace {

using test::same_bytes;
using test::snapshot;

struct Rig {
  test::TinyLlama tiny = test::load_tiny_llama(test::TinyLlamaSpec{}, at::kFloat);
  std::unique_ptr<LoraAdapters> lora;
  std::unique_ptr<TestTimeLearner> learner;
  Rig() {
    LoraConfig c;
    c.rank = 4;
    lora = std::make_unique<LoraAdapters>(*tiny.model, c);
    TlmObjectiveOptions o;
    o.sample_selection = false;
    learner = std::make_unique<TestTimeLearner>(*tiny.model, *lora, o, StepOptions{}, AdamWOptions{});
  }
};

const std::vector<int32_t> kRepeated = {5, 9, 33, 12, 5, 9, 33, 12, 5, 9};

TEST(CollapseGuards, ProbeTripsOnARepeatedPromptAndRollsBackToTheLastGoodStateBitwise) {
  Rig r;
  GuardOptions g;
  g.probe_every = 2;
  g.probe_tolerance = 0.01;
  const auto probe = test::random_token_sequences(6, test::TinyLlamaSpec{}.vocab_size, 21, 6);
  CollapseGuards guards(g, *r.tiny.model, *r.lora, r.learner->optimizer(), probe, 0, 4, "", false);
  std::vector<at::Tensor> good = snapshot(r.lora->parameters());
  std::vector<at::Tensor> good_m = snapshot(r.learner->optimizer().exp_avg());
  int passed = 0, rollbacks = 0;
  for (int k = 0; k < 24; ++k) {
    const StepRecord rec = r.learner->train_step({kRepeated}, 3e-2);
    for (const GuardEvent& e : guards.after_step(rec)) {
      if (e.kind == "probe passed") {
        ++passed;
        good = snapshot(r.lora->parameters());
        good_m = snapshot(r.learner->optimizer().exp_avg());
      } else if (e.kind == "rollback") {
        ++rollbacks;
        EXPECT_GT(e.value, e.limit);
        EXPECT_TRUE(test::all_same_bytes(r.lora->parameters(), good)) << "step " << e.step << ": not the last good adapter";
        EXPECT_TRUE(test::all_same_bytes(r.learner->optimizer().exp_avg(), good_m)) << "step " << e.step << ": moments";
      }
    }
  }
  std::printf("[guards] probe base NLL %.4f: %d probes passed, %d rollbacks in 24 steps\n", guards.probe_base_nll(),
              passed, rollbacks);
  EXPECT_GT(rollbacks, 0) << "the adversarial stream never tripped the probe";
  EXPECT_EQ(guards.summary()["rollbacks"].get<int>(), rollbacks);
}

TEST(CollapseGuards, PeriodicResetAndLossFloorRestoreTheFreshAdapter) {
  for (const bool floor : {false, true}) {
    Rig r;
    GuardOptions g;
    if (floor) g.loss_floor = 1e9;  // every moving average is below it: reset after each update
    else g.reset_every = 3;
    CollapseGuards guards(g, *r.tiny.model, *r.lora, r.learner->optimizer(), {}, 0, 4, "", false);
    const std::vector<at::Tensor> fresh = snapshot(r.lora->parameters());
    int events = 0;
    for (int k = 0; k < 6; ++k) {
      const StepRecord rec = r.learner->train_step({kRepeated}, 3e-2);
      const std::vector<GuardEvent> ev = guards.after_step(rec);
      events += static_cast<int>(ev.size());
      const bool expect_reset = floor || (k + 1) % 3 == 0;
      EXPECT_EQ(ev.size(), expect_reset ? 1u : 0u) << "step " << k + 1;
      EXPECT_EQ(test::all_same_bytes(r.lora->parameters(), fresh), expect_reset) << "step " << k + 1;
      if (expect_reset) {
        EXPECT_EQ(r.learner->optimizer().step_count(), 0);
      }
    }
    EXPECT_EQ(events, floor ? 6 : 2);
  }
}

// tlm serve lends each session's memory to one set of guards: counts, events and the loss
// average of one learner never leak into another's.
TEST(CollapseGuards, EachLearnersMemoryIsItsOwn) {
  Rig r;
  GuardOptions g;
  g.reset_every = 2;
  CollapseGuards guards(g, *r.tiny.model, *r.lora, r.learner->optimizer(), {}, 0, 4, "", false);
  GuardMemory other = guards.fresh_memory("tlm/b");
  for (int k = 0; k < 2; ++k) guards.after_step(r.learner->train_step({kRepeated}, 3e-2));
  EXPECT_EQ(guards.summary()["resets_periodic"].get<int>(), 1);
  guards.swap_memory(other);
  EXPECT_EQ(guards.summary()["resets_periodic"].get<int>(), 0);
  r.learner->train_step({kRepeated}, 3e-2);
  const std::vector<GuardEvent> ev = guards.after_step(r.learner->train_step({kRepeated}, 3e-2));  // step 4
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].owner, "tlm/b");
  EXPECT_EQ(ev[0].to_json()["session"], "tlm/b");
  guards.swap_memory(other);
  EXPECT_EQ(guards.summary()["resets_periodic"].get<int>(), 1);
  EXPECT_EQ(other.resets_periodic, 1);
  EXPECT_EQ(other.owner, "tlm/b");
}

}  // namespace
}  // namespace tlm
