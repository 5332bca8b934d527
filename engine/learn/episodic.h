// Episodic test-time adaptation: per prompt, a fresh LoRA, K plain gradient steps on the
// prompt's own NLL, the answer, then a reset -- nothing carries from one prompt to the next,
// so the base model and the adapter's fresh values are the same before every prompt (the
// setting of Xu, Chen and Yin, "Unsupervised Layer-Wise Dynamic Test Time Adaptation for
// LLMs", arXiv 2602.09719).
//   theta_{k+1} = theta_k - lr * m_k[module] * grad NLL(prompt; theta_k),   k = 0 .. K-1
// with m = 1 (a fixed step size) or per-step, per-module multipliers from StepSizes
// (ScaleNet, engine/learn/scalenet.h). Under TP the LoRA gradients of parts shared over TP
// are summed over the TP group (as every step of the engine does); under DP each replica
// adapts its own prompts (no DP reduction: the prompts are independent episodes).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "engine/learn/lora.h"
#include "engine/learn/scalenet.h"

namespace tlm {

class LlamaModel;

struct EpisodicOptions {
  int64_t steps = 5;      // K
  double lr = 1e-2;
};

// The multipliers of inner step k: [M] fp32 on the model's device, one per LoRA module.
class StepSizes {
 public:
  virtual ~StepSizes() = default;
  // `features`: ScaleNet's f_k of this step (ScaleNet::features).
  virtual at::Tensor at_step(int64_t k, const at::Tensor& features) const = 0;
};

// ScaleNet's multipliers g(a(f_k)), without gradient.
class ScaleNetStepSizes : public StepSizes {
 public:
  explicit ScaleNetStepSizes(const ScaleNet& net) : net_(net) {}
  at::Tensor at_step(int64_t k, const at::Tensor& features) const override;

 private:
  const ScaleNet& net_;
};

// What the inner loop saw, for ScaleNet's training and its tests.
struct EpisodeTrace {
  std::vector<at::Tensor> features;                // f_k, k = 0 .. K-1
  std::vector<at::Tensor> multipliers;             // m_k [M]
  std::vector<std::vector<at::Tensor>> gradients;  // g_k, per LoRA parameter (this rank's part)
};

class EpisodicAdapter {
 public:
  // `lora`: fresh adapters on `model` (B = 0); their values now are the ones every episode
  // starts from.
  EpisodicAdapter(LlamaModel& model, LoraAdapters& lora, const EpisodicOptions& options);
  // K steps on `ids` (with `sizes`' multipliers when given; `trace` filled when given);
  // returns the prompt NLL before each step and after the last (K + 1 values).
  std::vector<double> adapt(const std::vector<int32_t>& ids, const StepSizes* sizes = nullptr,
                            EpisodeTrace* trace = nullptr);
  // Back to the fresh values, bitwise.
  void reset();
  const EpisodicOptions& options() const { return options_; }
  LoraAdapters& lora() { return lora_; }
  const std::vector<at::Tensor>& fresh() const { return fresh_; }

 private:
  LlamaModel& model_;
  LoraAdapters& lora_;
  EpisodicOptions options_;
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> fresh_;
};

// ScaleNet's f_k = [mean first-layer residual; mean last hidden; k; K] [2H + 2] fp32, from a
// forward's residual stream after the first layer and its final hidden states (both [1, T, H]).
at::Tensor episode_features(const at::Tensor& first_layer, const at::Tensor& last_hidden, int64_t k, int64_t steps);

}  // namespace tlm
