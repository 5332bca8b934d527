#include "engine/learn/test_time_learner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/gather_objects.h"
#include "engine/common/error.h"
#include "engine/generate/token_batch.h"
#include "engine/learn/job_checkpoints.h"

namespace tlm {

namespace {

std::vector<double> to_vector(const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

TestTimeLearner::TestTimeLearner(LlamaModel& model, TrainableSet& trainable, std::shared_ptr<Objective> objective,
                                 const StepOptions& step, const AdamWOptions& adamw, CommunicatorPtr dp,
                                 CommunicatorPtr host_dp)
    : model_(model), trainable_(trainable), objective_(std::move(objective)), step_(step),
      optimizer_(trainable.parameters(), adamw),
      dp_(dp ? std::move(dp) : make_single_process_communicator()),
      host_dp_(host_dp ? std::move(host_dp) : dp_) {
  TLM_CHECK(objective_, "TestTimeLearner: no objective");
}

TestTimeLearner::TestTimeLearner(LlamaModel& model, TrainableSet& trainable, const TlmObjectiveOptions& objective,
                                 const StepOptions& step, const AdamWOptions& adamw, CommunicatorPtr dp,
                                 CommunicatorPtr host_dp)
    : TestTimeLearner(model, trainable, std::make_shared<TlmObjective>(objective), step, adamw, std::move(dp),
                      std::move(host_dp)) {}

namespace {

// A host value summed over a host (MPI) group.
double all_reduce_sum(double value, const CommunicatorPtr& group) {
  if (group->size() == 1) return value;
  at::Tensor t = at::tensor({value}, at::kDouble);
  group->all_reduce(t, ReduceOp::Sum);
  return t.item<double>();
}

// Clips to max_norm as torch.nn.utils.clip_grad_norm_ does; under TP the norm is taken over
// the full set (each element once). Returns the norm before clipping.
double clip_gradients(const TrainableSet& trainable, const std::vector<at::Tensor>& params,
                      const CommunicatorPtr& tp, double max_norm) {
  if (tp->size() == 1) return clip_grad_norm(params, max_norm);
  const double norm = trainable.gradient_norm(tp);
  if (max_norm > 0.0 && std::isfinite(norm)) {
    at::NoGradGuard no_grad;
    // torch's fp32 arithmetic: max_norm / (norm + 1e-6), clamped at 1.
    const float coef = std::min(1.0f, static_cast<float>(max_norm) / (static_cast<float>(norm) + 1e-6f));
    for (const at::Tensor& p : params)
      if (p.grad().defined()) p.grad().mul_(coef);
  }
  return norm;
}

}  // namespace

at::Tensor TestTimeLearner::frozen_hidden(const TokenBatch& batch) {
  at::NoGradGuard no_grad;
  trainable_.set_enabled(false);
  try {
    at::Tensor h = model_.forward_hidden(batch.ids, batch.attention_mask());
    trainable_.set_enabled(true);
    return h;
  } catch (...) {
    trainable_.set_enabled(true);
    throw;
  }
}

StepRecord TestTimeLearner::train_step(const std::vector<std::vector<int32_t>>& batch, double lr,
                                       const std::vector<double>& selection_ce,
                                       const std::vector<int64_t>& scored_from,
                                       const std::vector<int64_t>& scored_to) {
  const auto start = std::chrono::steady_clock::now();
  TLM_CHECK(!batch.empty() || dp_->size() > 1, "train_step: empty batch");
  TLM_CHECK(selection_ce.empty() || selection_ce.size() == batch.size(),
            "train_step: ", selection_ce.size(), " selection ce values for ", batch.size(), " samples");
  TLM_CHECK(scored_from.size() == scored_to.size() && (scored_from.empty() || scored_from.size() == batch.size()),
            "train_step: ", scored_from.size(), " / ", scored_to.size(), " scored bounds for ", batch.size(), " samples");
  at::AutoGradMode grad_mode(true);
  std::optional<RngState> rng_before;  // LoRA dropout draws in the forward; an abandoned step puts them back
  if (stop_check_) rng_before = capture_rng_state(model_.device());
  StepRecord rec;
  rec.step = ++steps_;
  rec.lr = lr;
  int64_t tokens = 0;
  for (const auto& s : batch) tokens += static_cast<int64_t>(s.size());
  rec.tokens = static_cast<int64_t>(all_reduce_sum(static_cast<double>(tokens), host_dp_));

  trainable_.set_training(true);
  optimizer_.zero_grad();
  std::vector<double> ce, current_ce, coeff, selected;
  std::vector<std::vector<double>> extra;
  SampleTerms terms;
  at::Tensor loss;
  double global_selected = 0.0, local_selected = 0.0;
  if (!batch.empty()) {
    TokenBatch token_batch = right_padded_batch(batch, 0, model_.device());
    ObjectiveBatch objective_batch{token_batch, selection_ce, scored_from, scored_to, {}};
    objective_batch.frozen_hidden = [this, &token_batch] { return frozen_hidden(token_batch); };
    terms = objective_->terms(model_, objective_batch);
    // One host copy carries the record's per-sample values and the selection; then the loss
    // with the global selected count (the selection does not depend on the normaliser).
    std::vector<at::Tensor> rows = {terms.ce.to(at::kDouble), terms.current_ce.to(at::kDouble),
                                    terms.weight.to(at::kDouble), terms.selected.to(at::kDouble)};
    for (const auto& [name, t] : terms.extra) rows.push_back(t.detach().to(at::kDouble));
    const at::Tensor host = at::stack(rows).to(at::kCPU);  // [4 + extra, b]
    ce = to_vector(host[0]);
    current_ce = to_vector(host[1]);
    coeff = to_vector(host[2]);
    selected = to_vector(host[3]);
    for (size_t i = 0; i < terms.extra.size(); ++i) extra.push_back(to_vector(host[4 + static_cast<int64_t>(i)]));
    for (double m : selected) local_selected += m;
    global_selected = all_reduce_sum(local_selected, host_dp_);
    loss = (terms.value * terms.weight * terms.selected.to(terms.value.scalar_type())).sum() /
           std::max(1.0, global_selected);
  } else {
    global_selected = all_reduce_sum(0.0, host_dp_);  // no sample in this replica's share
  }
  rec.loss = all_reduce_sum(loss.defined() ? loss.item<double>() : 0.0, host_dp_);
  rec.current_ce = all_gather_doubles(current_ce, host_dp_);
  rec.ce = all_gather_doubles(ce, host_dp_);
  rec.coeff = all_gather_doubles(coeff, host_dp_);
  for (double m : all_gather_doubles(selected, host_dp_)) rec.selected.push_back(m != 0.0);
  // Every replica gathers the objective's statistics, even one without a sample.
  const std::vector<std::string> extra_names = objective_->statistic_names();
  TLM_CHECK(batch.empty() || extra.size() == extra_names.size(), objective_->name(), ": ", extra.size(),
            " per-sample statistics for ", extra_names.size(), " names");
  for (size_t i = 0; i < extra_names.size(); ++i)
    rec.extra[extra_names[i]] = all_gather_doubles(i < extra.size() ? extra[i] : std::vector<double>{}, host_dp_);
  const bool any_selected = global_selected > 0.0;
  if (stop_check_ && stop_check_()) {
    --steps_;
    optimizer_.zero_grad();
    trainable_.set_training(false);
    restore_rng_state(*rng_before, model_.device(), "train_step");
    rec.abandoned = true;
    return rec;
  }

  if (!std::isfinite(rec.loss)) {
    rec.skip_reason = "non-finite loss";
  } else if (!any_selected && step_.skip_unselected) {
    rec.skip_reason = "no sample selected";
  } else {
    if (any_selected) {
      // A replica with no selected sample of its own has zero gradients; it still joins the
      // reduction (its TP group decides alike: the same samples on every TP rank).
      if (loss.defined() && local_selected > 0.0) loss.backward();
      if (model_.tp()->size() > 1 || dp_->size() > 1) trainable_.reduce_gradients(model_.tp(), dp_);
    } else {
      // No sample selected anywhere: the loss is 0 times finite values, so its gradient is
      // exactly zero. Skip the backward (the saving the paper's selection promises) and step
      // AdamW on zero gradients, as the official code's zero-loss backward would.
      at::NoGradGuard no_grad;
      for (at::Tensor p : trainable_.parameters()) p.mutable_grad() = at::zeros_like(p);
    }
    if (regulariser_) rec.regulariser = regulariser_->add_gradient(trainable_, model_.tp());
    rec.grad_norm = clip_gradients(trainable_, optimizer_.params(), model_.tp(), step_.max_grad_norm);
    if (!std::isfinite(rec.grad_norm)) {
      rec.skip_reason = "non-finite gradient";
    } else {
      optimizer_.step(lr);
      rec.updated = true;
    }
  }
  optimizer_.zero_grad();
  trainable_.set_training(false);
  objective_->after_step(batch.empty() ? nullptr : &terms, rec.updated, dp_);
  if (!rec.updated) ++skipped_;
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return rec;
}

}  // namespace tlm
