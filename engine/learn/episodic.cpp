#include "engine/learn/episodic.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/communicator.h"
#include "dist/lora_parallel.h"
#include "engine/common/error.h"
#include "engine/generate/token_batch.h"
#include "engine/learn/tlm_objective.h"
#include "engine/model/llama_model.h"

namespace tlm {

EpisodicAdapter::EpisodicAdapter(LlamaModel& model, LoraAdapters& lora, const EpisodicOptions& options)
    : model_(model), lora_(lora), options_(options), params_(lora.parameters()) {
  TLM_CHECK(options.steps >= 1, "episodic.steps must be >= 1, got ", options.steps);
  TLM_CHECK(options.lr > 0.0, "episodic: optim.lr must be positive, got ", options.lr);
  for (const at::Tensor& p : params_) fresh_.push_back(p.detach().clone());
}

std::vector<double> EpisodicAdapter::adapt(const std::vector<int32_t>& ids) {
  TLM_CHECK(ids.size() >= 2, "episodic: a prompt needs at least 2 tokens, got ", ids.size());
  const TokenBatch batch = right_padded_batch({ids}, 0, model_.device());
  const CommunicatorPtr no_dp = make_single_process_communicator();
  std::vector<double> nll;
  at::AutoGradMode grad_mode(true);
  lora_.set_training(true);
  for (int64_t k = 0; k < options_.steps; ++k) {
    for (at::Tensor& p : params_) p.mutable_grad() = at::Tensor();
    const at::Tensor loss = per_sample_ce(model_, batch).sum();
    loss.backward();
    nll.push_back(loss.item<double>());
    if (model_.tp()->size() > 1) reduce_lora_gradients(lora_.slots(), model_.tp(), no_dp);
    at::NoGradGuard no_grad;
    for (at::Tensor& p : params_)
      if (p.grad().defined()) p.sub_(p.grad(), options_.lr);
  }
  for (at::Tensor& p : params_) p.mutable_grad() = at::Tensor();
  lora_.set_training(false);
  at::NoGradGuard no_grad;
  nll.push_back(per_sample_ce(model_, batch).sum().item<double>());
  return nll;
}

void EpisodicAdapter::reset() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(fresh_[i]);
}

}  // namespace tlm
