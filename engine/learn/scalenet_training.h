// Training ScaleNet (engine/learn/scalenet.h) by first-order unrolled optimisation, as
// arXiv 2602.09719 describes: run an episode's K inner steps with the net's multipliers, then
// take the gold answer's NLL under the adapted LoRA, L_out(theta_K). With
//   theta_K = theta_0 - sum_k lr * m_k[j] * g_k[j]        (j: LoRA module, g_k: inner gradients)
// and the inner gradients held fixed (first order), the multiplier gradient is
//   dL_out / dm_k[j] = -lr * <grad_theta L_out(theta_K)[j], g_k[j]>,
// exact for the last step and first-order for the earlier ones. It is chained into the net
// through m_k = g(a(f_k)) by autograd (a surrogate sum_k <dL/dm_k, m_k(W)>), and AdamW steps
// the net.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "engine/learn/episodic.h"
#include "engine/learn/lora.h"
#include "engine/learn/scalenet.h"

namespace tlm {

class LlamaModel;

struct ScaleNetExample {
  std::vector<int32_t> prompt;  // the encoded prompt (chat template applied)
  std::vector<int32_t> answer;  // the gold answer's tokens (encode_continuation)
};

// Mean NLL of `answer` given `prompt` under the model as it is, differentiable in the LoRA
// tensors (one forward of prompt + answer).
at::Tensor answer_nll(const LlamaModel& model, const ScaleNetExample& example);

struct EpisodeGradient {
  at::Tensor multiplier_grad;  // dL_out / dm [K, M] fp32, on the model's device
  double outer_nll = 0.0;      // L_out(theta_K)
  double inner_nll_first = 0.0, inner_nll_last = 0.0;  // the prompt's NLL before and after
  EpisodeTrace trace;          // the features and multipliers the steps used
};

// One episode with `sizes`' multipliers (the net's, or fixed ones in tests), the outer NLL and
// the first-order multiplier gradient; the adapter is reset afterwards. Collective over TP.
EpisodeGradient scalenet_episode(LlamaModel& model, EpisodicAdapter& episodes, const StepSizes& sizes,
                                 const ScaleNetExample& example);

// Adds d(sum_k <dL/dm_k, g(a(f_k))>)/dW to the net's parameter gradients.
void accumulate_scalenet_gradient(const ScaleNet& net, const EpisodeGradient& episode);

}  // namespace tlm
