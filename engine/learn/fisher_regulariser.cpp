#include "engine/learn/fisher_regulariser.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "engine/common/error.h"
#include "engine/model/llama_model.h"

namespace tlm {
namespace {

// Mean cross-entropy of the prompt's next-token distributions against their own argmax.
at::Tensor pseudo_label_ce(const LlamaModel& model, const std::vector<int32_t>& prompt) {
  const at::Tensor ids = at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), at::kLong)
                             .view({1, -1}).to(model.device());
  const at::Tensor hidden = model.forward_hidden(ids, at::Tensor());  // [1, T, H]
  at::Tensor greedy;
  {
    at::NoGradGuard no_grad;
    greedy = model.logits_of(hidden[0]).argmax(-1);  // [T]: the greedy next token at each position
  }
  // log_likelihoods_of scores ids[t + 1] at position t: put the pseudo-labels there.
  const at::Tensor targets = at::cat({ids[0].narrow(0, 0, 1), greedy.narrow(0, 0, ids.size(1) - 1)}).view({1, -1});
  return -model.log_likelihoods_of(hidden, targets, at::Tensor()).mean();
}

}  // namespace

FisherRegulariser::FisherRegulariser(const LlamaModel& model, TrainableSet& trainable,
                                     const std::vector<std::vector<int32_t>>& prompts, double alpha)
    : alpha_(alpha) {
  TLM_CHECK(alpha >= 0.0, "objective.fisher_alpha must be >= 0, got ", alpha);
  const std::vector<at::Tensor> params = trainable.parameters();
  for (const at::Tensor& p : params) {
    fisher_.push_back(at::zeros_like(p).detach());
    theta0_.push_back(p.detach().clone());
  }
  const CommunicatorPtr no_dp = make_single_process_communicator();
  at::AutoGradMode grad_mode(true);
  trainable.set_training(false);
  for (const std::vector<int32_t>& prompt : prompts) {
    if (prompt.size() < 2) continue;
    for (const at::Tensor& p : params) p.mutable_grad() = at::Tensor();
    pseudo_label_ce(model, prompt).backward();
    if (model.tp()->size() > 1) trainable.reduce_gradients(model.tp(), no_dp);
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].grad().defined()) fisher_[i].addcmul_(params[i].grad(), params[i].grad());
    ++samples_;
  }
  for (const at::Tensor& p : params) p.mutable_grad() = at::Tensor();
  TLM_CHECK(samples_ > 0, "objective.fisher_data: no prompt of at least 2 tokens to estimate the Fisher information");
  at::NoGradGuard no_grad;
  for (at::Tensor& f : fisher_) f.div_(static_cast<double>(samples_));
}

double FisherRegulariser::add_gradient(const TrainableSet& trainable, const CommunicatorPtr& tp) const {
  at::NoGradGuard no_grad;
  const std::vector<at::Tensor> params = trainable.parameters();
  TLM_CHECK(params.size() == fisher_.size(), "fisher regulariser: ", params.size(), " trainables, F has ",
            fisher_.size());
  at::Tensor value = at::zeros({1}, params.front().options().dtype(at::kDouble).requires_grad(false));
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor p = params[i];
    const at::Tensor d = p.detach() - theta0_[i];
    if (trainable.owns(i)) value += (fisher_[i] * d * d).sum().to(at::kDouble);
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    p.mutable_grad().add_(fisher_[i] * d, 2.0 * alpha_);
  }
  if (tp->size() > 1) tp->all_reduce(value, ReduceOp::Sum);
  return alpha_ * value.item<double>();
}

nlohmann::json FisherRegulariser::spec() const { return {{"fisher_alpha", alpha_}, {"fisher_samples", samples_}}; }

}  // namespace tlm
