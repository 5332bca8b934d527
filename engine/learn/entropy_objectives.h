// The entropy-minimisation family on an LLM, as Objectives (engine/learn/objective.h). The
// per-sample entropy E is the mean, over the positions the batch marks as scored (the prompt;
// or, with positions = generated, the distributions that produced the first G tokens of the
// answer the job generated), of the entropy of the next-token distribution.
//
//   Tent (Wang et al., ICLR 2021): value E, weight 1, every sample selected: the loss is the
//     batch mean of E.
//   EATA (Niu et al., ICML 2022), its official code's rules: an entropy filter E < E0 with
//     E0 = entropy_margin * ln V, a redundancy filter cos(q, m) < redundancy_margin between the
//     sample's mean next-token distribution q and a moving average m of those of the samples
//     kept so far (m = 0.9 m + 0.1 mean(q of the kept); set from the first kept ones), weight
//     exp(E0 - E), value E: the loss is the weighted mean over the kept samples. m is the
//     method's state (checkpointed, restored on resume). Its Fisher regulariser is not
//     implemented (it needs source data this setting does not have).
//   COME (Zhang et al., ICLR 2025): Tent or EATA (`come_base`) with E the entropy of the
//     "opinion" instead of the softmax entropy (dist/vocab_parallel_rows.h: logits with their
//     norm held fixed in the gradient, belief e^z / S and uncertainty mass K / S, S = sum e^z + K,
//     K = the vocabulary size unless set). Under EATA the same E drives the filter and weights.
// Under TP the distributions stay split over the vocabulary (vocab-parallel entropy and
// mean probabilities; cosines from all-reduced dot products); under DP the moving average is
// updated from the kept samples of every replica.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "engine/learn/objective.h"

namespace tlm {

enum class ScoredPositions { Prompt, Generated };

// Which entropy E measures: of softmax(z) (Tent, EATA), or of COME's opinion.
enum class EntropyMeasure { Softmax, Opinion };

struct EntropyOptions {
  ScoredPositions positions = ScoredPositions::Prompt;
  int64_t generated_tokens = 16;  // G, with positions = generated
  EntropyMeasure measure = EntropyMeasure::Softmax;
  double uncertainty_mass = 0.0;  // COME's K; 0 = the vocabulary size
};

class TentObjective final : public Objective {
 public:
  explicit TentObjective(const EntropyOptions& options) : options_(options) {}
  std::string name() const override { return options_.measure == EntropyMeasure::Opinion ? "come" : "tent"; }
  SampleTerms terms(const LlamaModel& model, const ObjectiveBatch& batch) override;
  std::vector<std::string> statistic_names() const override { return {"entropy"}; }
  nlohmann::json spec() const override;

 private:
  EntropyOptions options_;
};

struct EataOptions {
  EntropyOptions entropy;
  double entropy_margin = 0.4;     // E0 = entropy_margin * ln(vocab_size)
  double redundancy_margin = 0.05; // kept when cos(q, m) < this
  double moving_average = 0.9;     // m = moving_average * m + (1 - moving_average) * mean(q)
};

class EataObjective final : public Objective {
 public:
  // `tp`: the model's tensor-parallel group; `vocab_size`: the full vocabulary; `device`: the
  // model's, where the moving average lives.
  EataObjective(const EataOptions& options, CommunicatorPtr tp, int64_t vocab_size, c10::Device device);
  std::string name() const override { return options_.entropy.measure == EntropyMeasure::Opinion ? "come" : "eata"; }
  SampleTerms terms(const LlamaModel& model, const ObjectiveBatch& batch) override;
  std::vector<std::string> statistic_names() const override { return {"entropy", "redundancy_cos"}; }
  void after_step(const SampleTerms* terms, bool updated, const CommunicatorPtr& dp) override;
  std::map<std::string, at::Tensor> state() const override;
  void load_state(const std::map<std::string, at::Tensor>& state, const std::string& source) override;
  nlohmann::json spec() const override;
  double entropy_threshold() const { return e0_; }

 private:
  EataOptions options_;
  CommunicatorPtr tp_;
  int64_t vocab_size_;
  c10::Device device_;
  double e0_;
  at::Tensor average_;  // [V/tp] fp32 on the model's device; undefined until the first kept sample
};

// "prompt" | "generated" -> ScoredPositions; anything else is an error naming it.
ScoredPositions parse_scored_positions(const std::string& name);
const char* scored_positions_name(ScoredPositions positions);

}  // namespace tlm
