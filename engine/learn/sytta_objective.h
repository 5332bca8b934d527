// A SyTTA-style objective (after Synergistic Test-Time Adaptation, arXiv 2510.10223, whose code
// is not released): the prompt's perplexity coupled with the output entropy of the first G
// tokens of the answer the job generates, inside a trust region to the frozen base model.
// Per sample, on the sequence prompt + its first G answer tokens:
//   value = NLL(prompt) + entropy_weight * mean_g H(p_theta(. | x, y_<g))
//                       + kl_weight * mean_g KL(p_theta(. | x, y_<g) || p_base(. | x, y_<g))
// weight 1, every sample selected (the batch mean). NLL is the mean next-token NLL over the
// prompt's own tokens (the answer tokens are the model's guesses, not targets); H and KL are
// over the G distributions that produced the answer tokens, vocab-parallel under TP
// (dist/vocab_parallel_rows.h). The paper leaves open which divergence bounds the drift and how
// the terms weigh; this engine's choices, each a recipe key: reverse KL (mode-seeking, as in
// RLHF trust regions), entropy_weight 1, kl_weight 1, G 16 (configs/sytta-online.yaml).
#pragma once

#include "engine/learn/objective.h"

namespace tlm {

struct SyttaOptions {
  double entropy_weight = 1.0;  // lambda
  double kl_weight = 1.0;       // beta; 0 = no trust region (no base forward)
  int64_t generated_tokens = 16;
};

class SyttaObjective final : public Objective {
 public:
  explicit SyttaObjective(const SyttaOptions& options);
  std::string name() const override { return "sytta"; }
  SampleTerms terms(const LlamaModel& model, const ObjectiveBatch& batch) override;
  std::vector<std::string> statistic_names() const override { return {"prompt_nll", "entropy", "reverse_kl"}; }
  nlohmann::json spec() const override;

 private:
  SyttaOptions options_;
};

}  // namespace tlm
