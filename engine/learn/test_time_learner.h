// One test-time optimiser step of any objective (engine/learn/objective.h): the objective's
// per-sample terms from the forward of the batch through the model with LoRA, the weighted
// and selected loss, backward into the trainable set only (LoRA, or norm weights), gradient clipping, and an AdamW
// update -- or, for a non-finite loss or gradient, no update at all (adapter and optimiser
// state untouched) with the reason recorded.
//
// Under data parallelism every replica calls train_step with its share of the step's global
// batch: the selection normaliser sum(mask) is global, gradients are summed over TP (for
// shared parts) and over DP, and the record holds the whole global batch, so DP = k makes
// the update one process makes with the global batch.
#pragma once

#include <functional>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/generate/token_batch.h"
#include "engine/learn/adamw.h"
#include "engine/learn/fisher_regulariser.h"
#include "engine/learn/trainable_set.h"
#include "engine/model/llama_model.h"
#include "engine/learn/objective.h"
#include "engine/learn/tlm_objective.h"

namespace tlm {

struct StepOptions {
  double max_grad_norm = 1.0;
  // The official code steps even when no sample of the batch is selected (zero loss, but
  // Adam's moments still move the weights). true = skip such steps instead (the paper's view).
  bool skip_unselected = false;
};

struct StepRecord {
  int64_t step = 0;                 // optimiser steps taken or attempted so far, 1-based
  // Per-sample vectors cover the global batch (every DP replica's share, in stream order).
  std::vector<double> ce;           // per sample, the ce that selected it (TLM) / its input ce
  std::vector<double> current_ce;   // per sample, under the model being trained
  std::vector<bool> selected;
  std::vector<double> coeff;        // per sample, the objective's weight
  std::map<std::string, std::vector<double>> extra;  // the objective's other per-sample statistics
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;
  double regulariser = 0.0;         // the parameter regulariser's value (EATA's Fisher term), if any
  bool updated = false;
  std::string skip_reason;          // "non-finite loss", "non-finite gradient", "no sample selected"
  int64_t tokens = 0;
  double seconds = 0.0;
  // The stop check (set_stop_check) said stop after the forward pass: nothing was learned,
  // nothing counted; the caller stops as it would before the step.
  bool abandoned = false;
};

class TestTimeLearner {
 public:
  // `dp`: the data-parallel group of the model's device tensors (LoRA gradients; size 1
  // without DP), `host_dp` the same ranks' host group (counts, per-sample values; defaults to
  // `dp`, which is right for CPU ranks). TP comes from the model.
  TestTimeLearner(LlamaModel& model, TrainableSet& trainable, std::shared_ptr<Objective> objective,
                  const StepOptions& step, const AdamWOptions& adamw, CommunicatorPtr dp = nullptr,
                  CommunicatorPtr host_dp = nullptr);
  // The TLM objective with these options.
  TestTimeLearner(LlamaModel& model, TrainableSet& trainable, const TlmObjectiveOptions& objective,
                  const StepOptions& step, const AdamWOptions& adamw, CommunicatorPtr dp = nullptr,
                  CommunicatorPtr host_dp = nullptr);

  // `batch`: this replica's share of the step (may be empty under DP). `selection_ce`: the
  // offline setting's adapter-off ce for these samples; empty = online. `scored_from` /
  // `scored_to`: per sample, the positions an entropy objective counts (see ObjectiveBatch).
  StepRecord train_step(const std::vector<std::vector<int32_t>>& batch, double lr,
                        const std::vector<double>& selection_ce = {},
                        const std::vector<int64_t>& scored_from = {},
                        const std::vector<int64_t>& scored_to = {});

  AdamW& optimizer() { return optimizer_; }
  TrainableSet& trainable() { return trainable_; }
  // A regulariser of the trainables (EATA's Fisher term): its gradient joins the loss's after
  // the gradient reduction, before clipping.
  void set_regulariser(std::shared_ptr<const FisherRegulariser> regulariser) { regulariser_ = std::move(regulariser); }
  Objective& objective() { return *objective_; }
  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps) { steps_ = steps; }  // a resumed job continues the count
  int64_t skipped_steps() const { return skipped_; }
  // Asked once per step, between the forward pass and the backward, on every rank alike (it
  // may be a collective): true abandons the step (no backward, no update; the step count and
  // the random generators as they were before it) and train_step returns it `abandoned`. A
  // stop request then waits for one forward pass, not for a whole step. nullptr: never asked.
  void set_stop_check(std::function<bool()> check) { stop_check_ = std::move(check); }

 private:
  // The batch's hidden states under the frozen base (adapters off), for ObjectiveBatch.
  at::Tensor frozen_hidden(const TokenBatch& batch);

  LlamaModel& model_;
  TrainableSet& trainable_;
  std::shared_ptr<Objective> objective_;
  std::shared_ptr<const FisherRegulariser> regulariser_;
  StepOptions step_;
  AdamW optimizer_;
  CommunicatorPtr dp_;
  CommunicatorPtr host_dp_;
  int64_t steps_ = 0;
  int64_t skipped_ = 0;
  std::function<bool()> stop_check_;
};

}  // namespace tlm
