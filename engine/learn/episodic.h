// Episodic test-time adaptation: per prompt, a fresh LoRA, K plain gradient steps on the
// prompt's own NLL, the answer, then a reset -- nothing carries from one prompt to the next,
// so the base model and the adapter's fresh values are the same before every prompt (the
// setting of Xu, Chen and Yin, "Unsupervised Layer-Wise Dynamic Test Time Adaptation for
// LLMs", arXiv 2602.09719, with a fixed step size; their ScaleNet, which sets per-layer,
// per-step sizes, is not implemented yet).
//   theta_{k+1} = theta_k - lr * grad NLL(prompt; theta_k),   k = 0 .. K-1
// Under TP the LoRA gradients of parts shared over TP are summed over the TP group (as every
// step of the engine does); under DP each replica adapts its own prompts (no DP reduction:
// the prompts are independent episodes).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "engine/learn/lora.h"

namespace tlm {

class LlamaModel;

struct EpisodicOptions {
  int64_t steps = 5;      // K
  double lr = 1e-2;
};

class EpisodicAdapter {
 public:
  // `lora`: fresh adapters on `model` (B = 0); their values now are the ones every episode
  // starts from.
  EpisodicAdapter(LlamaModel& model, LoraAdapters& lora, const EpisodicOptions& options);
  // K steps on `ids`; returns the prompt NLL before each step and after the last (K + 1 values).
  std::vector<double> adapt(const std::vector<int32_t>& ids);
  // Back to the fresh values, bitwise.
  void reset();
  const EpisodicOptions& options() const { return options_; }

 private:
  LlamaModel& model_;
  LoraAdapters& lora_;
  EpisodicOptions options_;
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> fresh_;
};

}  // namespace tlm
