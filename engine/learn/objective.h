// What a test-time step minimises: the seam every method of the family plugs into (TLM,
// Tent, EATA, ...). An objective turns the model's forward on this replica's share of the
// step's batch into per-sample terms; the learner makes the loss
//     loss = sum_i weight_i * selected_i * value_i / max(1, N)
// where N is the number of selected samples over every data-parallel replica (the normaliser
// is global, so DP = k makes the update one process makes), then backward, gradient
// reduction, clipping and the AdamW step, the same for every method. TLM: value = ce,
// weight = lambda * exp(ce - t), selected = ce > t. Tent: value = mean token entropy, weight 1,
// all selected (the batch mean). EATA: value = entropy, weight = exp(E0 - E), selected by
// its entropy and redundancy filters.
//
// A method's own state (EATA's moving average of probabilities) lives in the objective as
// named full-size tensors, which checkpoints store and resume restores.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "engine/generate/token_batch.h"

namespace tlm {

class LlamaModel;

// This replica's share of a step, as the objective sees it.
struct ObjectiveBatch {
  const TokenBatch& tokens;              // right-padded, on the model's device
  std::vector<double> selection_ce;      // offline TLM: the adapter-off ce per row; else empty
  // Per row, the positions [scored_from, scored_to) whose next-token distributions an entropy
  // objective counts (empty = every real position of the row).
  std::vector<int64_t> scored_from;
  std::vector<int64_t> scored_to;
  // The batch's final-normed hidden states [B, T, H] under the frozen base model (every
  // trainable off), without gradient, for objectives with a trust region to the base (SyTTA);
  // set by the learner, empty where no caller provides it.
  std::function<at::Tensor()> frozen_hidden;
};

// [B, T] bool: the positions of each row an entropy objective counts (real tokens within
// [scored_from, scored_to) when given), on the batch's device.
at::Tensor scored_positions(const ObjectiveBatch& batch);

// The rows of hidden [B, T, H] where `positions` [B, T] (bool) is true, row-major: rows
// [N, H] (differentiable) and each row's sample index [N] int64.
struct ScoredRows {
  at::Tensor rows;
  at::Tensor sample;
};
ScoredRows scored_rows(const at::Tensor& hidden, const at::Tensor& positions);
// The mean of per-row values [N] over each sample's rows -> [batch] fp32 (0 for a sample
// without rows), differentiable.
at::Tensor per_sample_mean(const at::Tensor& values, const at::Tensor& sample, int64_t batch);

struct SampleTerms {
  at::Tensor value;       // [b] fp32, differentiable through the trainables
  at::Tensor weight;      // [b] fp32, detached
  at::Tensor selected;    // [b] bool
  at::Tensor ce;          // [b] detached: the ce the record reports (TLM: the one that selected)
  at::Tensor current_ce;  // [b] detached: the input ce under the model being trained
  // Further per-sample statistics for metrics.jsonl (detached [b]), in the order of
  // Objective::statistic_names(), e.g. {"entropy", ...}.
  std::vector<std::pair<std::string, at::Tensor>> extra;
  at::Tensor mean_probs;  // [b, V/tp] detached, for objectives with a state update; else undefined
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string name() const = 0;
  // Per-sample terms of this replica's share (at least one row).
  virtual SampleTerms terms(const LlamaModel& model, const ObjectiveBatch& batch) = 0;
  // The names of SampleTerms::extra, in order (the same for every batch).
  virtual std::vector<std::string> statistic_names() const { return {}; }
  // After every step, on every DP replica: updates the method's state. `terms` is null for a
  // replica without a sample in the step; `updated` says whether the optimiser stepped.
  // Collective over `dp` (the device group) for objectives with state.
  virtual void after_step(const SampleTerms* terms, bool updated, const CommunicatorPtr& dp) {}
  // Full-size state tensors by name (collective over TP where they are sharded) and back.
  virtual std::map<std::string, at::Tensor> state() const { return {}; }
  virtual void load_state(const std::map<std::string, at::Tensor>& state, const std::string& source) {}
  // The method and its hyperparameters, for summary.json and the checkpoint's identity.
  virtual nlohmann::json spec() const = 0;
};

}  // namespace tlm
