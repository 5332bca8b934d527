// Collapse guards for every method (all off by default; each a recipe key, guard.*): what an
// engine that adapts for weeks needs when a stream drives the model somewhere bad.
//   loss floor (as SAR does):   the moving average m = a m + (1 - a) loss of the updated steps'
//                               losses; when m < floor, the adapter is reset to its fresh
//                               values and the optimiser's moments cleared.
//   periodic reset (as RDumb):  the same reset every N optimiser steps.
//   reference probe:            every N steps the mean token NLL of a small general prompt set
//                               (guard.probe_data) under the current adapter; when it is worse
//                               than the base model's (adapters off, measured at the start) by
//                               more than tolerance (a fraction), the adapter and optimiser
//                               roll back, bitwise, to the state of the last probe that passed
//                               (the fresh state before the first). A passing probe records
//                               the state as the new last good one.
// Every event is logged, written to guards.jsonl in the output directory and counted in
// summary.json ("guards"). Each rank holds its own shards' copies (no collective but the
// probe's TP forward); every DP replica scores the whole probe set, so all decide alike.
// The method's own state (EATA's moving average) is left as it is. The guards' own state (the
// moving average, the counts, the fresh and last good trainables and moments) checkpoints as
// method state under "guard." names, so a resumed job continues exactly.
// What the guards remember of one learner's history is a GuardMemory: a job has one; `tlm
// serve` keeps one per session and lends it to the guards for that session's steps.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "dist/process_grid.h"
#include "engine/learn/adamw.h"
#include "engine/learn/trainable_set.h"
#include "engine/learn/test_time_learner.h"

namespace tlm {

class LlamaModel;

struct GuardOptions {
  double loss_floor = 0.0;        // guard.loss_floor; 0 = off
  double loss_average = 0.9;      // guard.loss_average: a of the moving average
  int64_t reset_every = 0;        // guard.reset_every; 0 = off
  std::string probe_data;         // guard.probe_data (--guard-data): the general prompt set
  int64_t probe_every = 0;        // guard.probe_every; 0 = off
  double probe_tolerance = 0.05;  // guard.probe_tolerance: rollback when NLL > base * (1 + this)
  int64_t probe_samples = 32;     // guard.probe_samples: the first N prompts of probe_data
  bool any() const { return loss_floor > 0.0 || reset_every > 0 || probe_every > 0; }
};

struct GuardEvent {
  std::string owner;   // the session, in tlm serve ("session" in the JSON when set)
  int64_t step = 0;
  std::string kind;    // "reset (loss floor)", "reset (periodic)", "probe passed", "rollback"
  double value = 0.0;  // the moving average, or the probe's NLL
  double limit = 0.0;  // the floor, or base * (1 + tolerance)
  nlohmann::json to_json() const;
};

// The trainables and AdamW moments at one moment (a reset or rollback target).
struct GuardState {
  std::vector<at::Tensor> params, exp_avg, exp_avg_sq;
  int64_t optimizer_steps = 0;
};

struct GuardMemory {
  GuardState last_good;          // what a rollback goes back to
  double average = 0.0;          // the loss's moving average
  bool average_set = false;
  int64_t resets_floor = 0, resets_periodic = 0, probes = 0, rollbacks = 0;
  std::string owner;             // "" for a job; in tlm serve the session ("tlm/<name>"), named in events
};

class CollapseGuards {
 public:
  // `probe`: the probe set's token ids (empty when the probe is off); its base NLL is measured
  // now with the adapters off. `events_path`: guards.jsonl ("" = none); `writer`: rank 0.
  CollapseGuards(const GuardOptions& options, LlamaModel& model, TrainableSet& trainable, AdamW& optimizer,
                 std::vector<std::vector<int32_t>> probe, int32_t pad, int64_t score_batch,
                 const std::string& events_path, bool writer);
  // After every optimiser step (attempted or taken), on every rank in the same order.
  std::vector<GuardEvent> after_step(const StepRecord& step);
  // A learner's memory as it starts: last good = the fresh state, no average, no events.
  GuardMemory fresh_memory(const std::string& owner = "") const;
  // Exchanges the memory the guards work with (a server lends each session's for its step).
  void swap_memory(GuardMemory& other) { std::swap(memory_, other); }
  // Does this event put the trainables back (reset or rollback)?
  static bool restores(const GuardEvent& event) { return event.kind != "probe passed"; }
  nlohmann::json summary() const;
  double probe_base_nll() const { return probe_base_; }
  // A resumed job: writes back the events of `previous` (the old guards.jsonl's lines) up to
  // the resumed step, so the file matches an uninterrupted run's.
  void keep_events_until(const std::vector<std::string>& previous, int64_t step);
  const std::string& events_path() const { return events_path_; }
  // The checkpoint's per-step stats after this step (doubles, exact): event counts so far and
  // the loss moving average ("guard_resets_loss_floor", ..., "guard_loss_average").
  std::map<std::string, double> step_stats() const;
  // The fresh and last good trainables and moments as full-size tensors by name
  // ("fresh.<param>", "last_good.exp_avg.<param>", "fresh.optimizer_step", ...): collective over TP.
  std::map<std::string, at::Tensor> state() const;
  // Restores state() and the last step's step_stats(); throws naming `source` and the tensor
  // or stat when one is missing.
  void load_state(const std::map<std::string, at::Tensor>& state,
                  const std::map<std::string, std::vector<double>>& stats, const std::string& source);

 private:
  GuardState capture() const;
  void restore(const GuardState& state);
  double probe_nll() const;
  void record(const GuardEvent& event);

  GuardOptions options_;
  LlamaModel& model_;
  TrainableSet& trainable_;
  AdamW& optimizer_;
  std::vector<std::vector<int32_t>> probe_;
  int32_t pad_;
  int64_t score_batch_;
  bool writer_;
  std::string events_path_;
  std::ofstream events_;
  GuardState fresh_;
  GuardMemory memory_;
  double probe_base_ = 0.0;
};

}  // namespace tlm
