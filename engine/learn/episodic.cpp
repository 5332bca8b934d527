#include "engine/learn/episodic.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/communicator.h"
#include "engine/common/error.h"
#include "engine/generate/token_batch.h"
#include "engine/learn/tlm_objective.h"
#include "engine/model/llama_model.h"

namespace tlm {

at::Tensor ScaleNetStepSizes::at_step(int64_t, const at::Tensor& features) const {
  at::NoGradGuard no_grad;
  return net_.multipliers(features);
}

at::Tensor episode_features(const at::Tensor& first_layer, const at::Tensor& last_hidden, int64_t k, int64_t steps) {
  at::NoGradGuard no_grad;
  const at::Tensor first = first_layer.detach()[0].to(at::kFloat).mean(0);
  const at::Tensor last = last_hidden.detach()[0].to(at::kFloat).mean(0);
  at::Tensor step = at::tensor({static_cast<float>(k), static_cast<float>(steps)}).to(first.device());
  return at::cat({first, last, step});
}

EpisodicAdapter::EpisodicAdapter(LlamaModel& model, LoraAdapters& lora, const EpisodicOptions& options)
    : model_(model), lora_(lora), options_(options), params_(lora.parameters()) {
  TLM_CHECK(options.steps >= 1, "episodic.steps must be >= 1, got ", options.steps);
  TLM_CHECK(options.lr > 0.0, "episodic: optim.lr must be positive, got ", options.lr);
  for (const at::Tensor& p : params_) fresh_.push_back(p.detach().clone());
}

std::vector<double> EpisodicAdapter::adapt(const std::vector<int32_t>& ids, const StepSizes* sizes,
                                           EpisodeTrace* trace) {
  TLM_CHECK(ids.size() >= 2, "episodic: a prompt needs at least 2 tokens, got ", ids.size());
  const TokenBatch batch = right_padded_batch({ids}, 0, model_.device());
  const CommunicatorPtr no_dp = make_single_process_communicator();
  const bool features = sizes || trace;
  std::vector<double> nll;
  at::AutoGradMode grad_mode(true);
  lora_.set_training(true);
  for (int64_t k = 0; k < options_.steps; ++k) {
    for (at::Tensor& p : params_) p.mutable_grad() = at::Tensor();
    std::vector<at::Tensor> residuals;
    const at::Tensor hidden = model_.forward_hidden(batch.ids, batch.attention_mask(), nullptr,
                                                    features ? &residuals : nullptr);
    const at::Tensor loss = per_sample_ce_of(model_, hidden, batch).sum();
    loss.backward();
    nll.push_back(loss.item<double>());
    if (model_.tp()->size() > 1) lora_.reduce_gradients(model_.tp(), no_dp);
    at::NoGradGuard no_grad;
    at::Tensor f, m;
    if (features) f = episode_features(residuals.at(0), hidden, k, options_.steps);
    if (sizes) {
      m = sizes->at_step(k, f);
      TLM_CHECK(m.dim() == 1 && m.size(0) == static_cast<int64_t>(params_.size() / 2), "episodic: ",
                m.sizes(), " step multipliers for ", params_.size() / 2, " LoRA modules");
    }
    if (trace) {
      trace->features.push_back(f);
      trace->multipliers.push_back(m.defined() ? m.clone() : at::ones({static_cast<int64_t>(params_.size() / 2)}, f.options()));
      std::vector<at::Tensor> g;
      for (const at::Tensor& p : params_) g.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
      trace->gradients.push_back(std::move(g));
    }
    for (size_t i = 0; i < params_.size(); ++i) {
      at::Tensor& p = params_[i];
      if (!p.grad().defined()) continue;
      if (m.defined()) p.sub_(p.grad() * m[static_cast<int64_t>(i / 2)], options_.lr);
      else p.sub_(p.grad(), options_.lr);
    }
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
