#include "engine/learn/scalenet_training.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/communicator.h"
#include "engine/common/error.h"
#include "engine/model/llama_model.h"

namespace tlm {

at::Tensor answer_nll(const LlamaModel& model, const ScaleNetExample& example) {
  TLM_CHECK(!example.prompt.empty() && !example.answer.empty(), "scalenet: an example needs a prompt and an answer");
  std::vector<int64_t> seq(example.prompt.begin(), example.prompt.end());
  seq.insert(seq.end(), example.answer.begin(), example.answer.end());
  const at::Tensor ids = at::tensor(seq, at::kLong).view({1, -1}).to(model.device());
  const at::Tensor hidden = model.forward_hidden(ids, at::Tensor());
  const at::Tensor logp = model.log_likelihoods_of(hidden, ids, at::Tensor());  // [1, T-1]
  const int64_t p = static_cast<int64_t>(example.prompt.size());
  // log p(answer[i] | prompt, answer[<i]) sits at position p - 1 + i of the T - 1 targets.
  return -logp[0].narrow(0, p - 1, static_cast<int64_t>(example.answer.size())).mean();
}

EpisodeGradient scalenet_episode(LlamaModel& model, EpisodicAdapter& episodes, const StepSizes& sizes,
                                 const ScaleNetExample& example) {
  EpisodeGradient out;
  const std::vector<double> inner = episodes.adapt(example.prompt, &sizes, &out.trace);
  out.inner_nll_first = inner.front();
  out.inner_nll_last = inner.back();
  LoraAdapters& lora = episodes.lora();
  const std::vector<at::Tensor> params = lora.parameters();
  {
    at::AutoGradMode grad_mode(true);
    for (const at::Tensor& p : params) p.mutable_grad() = at::Tensor();
    const at::Tensor loss = answer_nll(model, example);
    loss.backward();
    out.outer_nll = loss.item<double>();
  }
  const CommunicatorPtr& tp = model.tp();
  if (tp->size() > 1) lora.reduce_gradients(tp, make_single_process_communicator());
  at::NoGradGuard no_grad;
  const int64_t K = static_cast<int64_t>(out.trace.gradients.size());
  const int64_t M = static_cast<int64_t>(params.size() / 2);
  out.multiplier_grad = at::zeros({K, M}, params.front().options().dtype(at::kFloat).requires_grad(false));
  for (int64_t k = 0; k < K; ++k) {
    for (size_t i = 0; i < params.size(); ++i) {
      if (!lora.owns(i) || !params[i].grad().defined()) continue;  // each element counted once over TP
      const at::Tensor dot = (params[i].grad() * out.trace.gradients[k][i]).sum();
      out.multiplier_grad[k][static_cast<int64_t>(i / 2)] += dot;
    }
  }
  if (tp->size() > 1) tp->all_reduce(out.multiplier_grad, ReduceOp::Sum);
  out.multiplier_grad.mul_(-episodes.options().lr);
  for (const at::Tensor& p : params) p.mutable_grad() = at::Tensor();
  episodes.reset();
  return out;
}

void accumulate_scalenet_gradient(const ScaleNet& net, const EpisodeGradient& episode) {
  at::AutoGradMode grad_mode(true);
  at::Tensor surrogate = at::zeros({}, net.parameters().front().options().requires_grad(false));
  for (size_t k = 0; k < episode.trace.features.size(); ++k)
    surrogate = surrogate + (episode.multiplier_grad[static_cast<int64_t>(k)] * net.multipliers(episode.trace.features[k])).sum();
  surrogate.backward();
}

}  // namespace tlm
