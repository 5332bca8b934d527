#include "engine/learn/test_time_learner.h"

#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "engine/common/error.h"
#include "engine/generate/token_batch.h"

namespace tlm {

namespace {

std::vector<double> to_vector(const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

TestTimeLearner::TestTimeLearner(LlamaModel& model, LoraAdapters& lora,
                                 const TlmObjectiveOptions& objective, const StepOptions& step,
                                 const AdamWOptions& adamw)
    : model_(model), lora_(lora), objective_(objective), step_(step),
      optimizer_(lora.parameters(), adamw) {}

StepRecord TestTimeLearner::train_step(const std::vector<std::vector<int32_t>>& batch, double lr,
                                       const std::vector<double>& selection_ce) {
  const auto start = std::chrono::steady_clock::now();
  TLM_CHECK(!batch.empty(), "train_step: empty batch");
  TLM_CHECK(selection_ce.empty() || selection_ce.size() == batch.size(),
            "train_step: ", selection_ce.size(), " selection ce values for ", batch.size(), " samples");
  at::AutoGradMode grad_mode(true);
  StepRecord rec;
  rec.step = ++steps_;
  rec.lr = lr;
  for (const auto& s : batch) rec.tokens += static_cast<int64_t>(s.size());

  lora_.set_training(true);
  optimizer_.zero_grad();
  TokenBatch tokens = right_padded_batch(batch, 0);
  at::Tensor ce = per_sample_ce(model_, tokens);  // [B]
  at::Tensor sel = selection_ce.empty() ? at::Tensor()
                                        : at::tensor(selection_ce, at::kDouble).to(at::kFloat);
  TlmLoss loss = tlm_loss(ce, sel, objective_);
  rec.current_ce = to_vector(ce);
  rec.ce = selection_ce.empty() ? rec.current_ce : selection_ce;
  rec.coeff = to_vector(loss.coeff);
  at::Tensor mask = loss.mask.to(at::kLong);
  for (int64_t i = 0; i < mask.size(0); ++i) rec.selected.push_back(mask[i].item<int64_t>() != 0);
  rec.loss = loss.loss.item<double>();
  const bool any_selected = mask.sum().item<int64_t>() > 0;

  if (!std::isfinite(rec.loss)) {
    rec.skip_reason = "non-finite loss";
  } else if (!any_selected && step_.skip_unselected) {
    rec.skip_reason = "no sample selected";
  } else {
    loss.loss.backward();
    rec.grad_norm = clip_grad_norm(optimizer_.params(), step_.max_grad_norm);
    if (!std::isfinite(rec.grad_norm)) {
      rec.skip_reason = "non-finite gradient";
    } else {
      optimizer_.step(lr);
      rec.updated = true;
    }
  }
  optimizer_.zero_grad();
  lora_.set_training(false);
  if (!rec.updated) ++skipped_;
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return rec;
}

}  // namespace tlm
