// EATA's anti-forgetting regulariser (Niu et al., ICML 2022, "Efficient Test-Time Model
// Adaptation without Forgetting"): alpha * sum_i F_i (theta_i - theta0_i)^2 over the trainable
// set, with F the diagonal Fisher information estimated on a reference set under the fresh
// trainables theta0. As the official code does, each reference sample (here a prompt) gives
// the squared gradient of its cross-entropy against the model's own pseudo-labels (here the
// greedy next token at every prompt position), and F is their mean. The setting has no source
// data, so the reference is a file the user gives (`objective.fisher_data`, e.g. general
// instructions); off by default.
//
// The learner adds the term's gradient 2 alpha F (theta - theta0) after the loss gradients are
// reduced over TP and DP, so no replicated part is counted more than once; F itself is
// computed from TP-reduced gradients, identical on every rank that holds an element.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "engine/learn/trainable_set.h"

namespace tlm {

class LlamaModel;

struct FisherOptions {
  std::string data;         // reference prompts; empty: no regulariser
  double alpha = 2000.0;    // EATA's fisher_alpha (its ImageNet-C value)
  int64_t samples = 64;     // reference prompts used (the first ones)
  bool enabled() const { return !data.empty(); }
};

class FisherRegulariser {
 public:
  // Estimates F over `prompts` (token ids) with `trainable` at its current values, which
  // become theta0. Collective over the model's TP group; every DP replica computes the same F.
  FisherRegulariser(const LlamaModel& model, TrainableSet& trainable, const std::vector<std::vector<int32_t>>& prompts,
                    double alpha);

  // Adds 2 alpha F (theta - theta0) to every parameter's gradient (creating zero gradients
  // where there are none) and returns alpha * sum F (theta - theta0)^2 over the full set.
  // Collective over `tp`.
  double add_gradient(const TrainableSet& trainable, const CommunicatorPtr& tp) const;

  const std::vector<at::Tensor>& fisher() const { return fisher_; }
  double alpha() const { return alpha_; }
  nlohmann::json spec() const;

 private:
  double alpha_;
  int64_t samples_ = 0;
  std::vector<at::Tensor> fisher_;  // per parameter, this rank's part
  std::vector<at::Tensor> theta0_;
};

}  // namespace tlm
