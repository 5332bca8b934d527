// The TLM objective (Hu et al., ICML 2025, as the official code computes it). For a batch of
// prompts with per-sample log-perplexity ce_i (mean next-token NLL over the templated prompt):
//   mask_i  = ce_i > threshold                        (sample selection)
//   coeff_i = lambda * exp(ce_i - threshold)          (detached: a weight, not a gradient path)
//   loss    = sum_i coeff_i * mask_i * f(ce_i) / max(1, sum_i mask_i)
// with f(ce) = ce (log-perplexity, the official code) or exp(ce) (perplexity, the paper's
// notation). Without sample selection (the ablation) mask = 1 and coeff = 1.
#pragma once

#include <ATen/core/Tensor.h>

#include "engine/learn/adamw.h"
#include "engine/learn/objective.h"

namespace tlm {

struct TlmObjectiveOptions {
  double threshold = 3.0;
  double lambda = 0.1;
  bool sample_selection = true;
  bool perplexity_loss = false;  // false: log-perplexity (official code)
};

struct TlmLoss {
  at::Tensor loss;    // scalar, differentiable through ce
  at::Tensor mask;    // [B] bool
  at::Tensor coeff;   // [B] fp32
};

// `ce` [B] fp32 (differentiable). mask and coeff come from `selection_ce` when it is defined
// (offline: the base model's ce, scored with adapters off) and from ce itself otherwise
// (online). `global_selected` is sum(mask) over every data-parallel replica of the step (the
// normaliser is global); pass a negative value to use this batch's.
TlmLoss tlm_loss(const at::Tensor& ce, const at::Tensor& selection_ce,
                 const TlmObjectiveOptions& options, double global_selected = -1.0);

class LlamaModel;
struct TokenBatch;

// Per-sample mean next-token NLL [B] (differentiable through the LoRA tensors).
at::Tensor per_sample_ce(const LlamaModel& model, const TokenBatch& batch);
// The same from hidden states [B, T, H] of forward_hidden (one forward, several statistics).
at::Tensor per_sample_ce_of(const LlamaModel& model, const at::Tensor& hidden, const TokenBatch& batch);

// TLM as an Objective: value = ce (or exp(ce)), weight = coeff, selected = mask; mask and
// coeff from the batch's selection_ce when given (offline), else from ce itself (online).
class TlmObjective final : public Objective {
 public:
  explicit TlmObjective(const TlmObjectiveOptions& options) : options_(options) {}
  std::string name() const override { return "tlm"; }
  SampleTerms terms(const LlamaModel& model, const ObjectiveBatch& batch) override;
  nlohmann::json spec() const override;
  const TlmObjectiveOptions& options() const { return options_; }

 private:
  TlmObjectiveOptions options_;
};

}  // namespace tlm
