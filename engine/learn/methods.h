// The test-time methods `tlm adapt` offers, by name (recipe key `method:`): the one place that
// turns a method's typed settings into its Objective. A new method adds its objective file, a
// case here and a recipe.
//   tlm   TLM (Hu et al., ICML 2025): perplexity minimisation with sample selection (default)
//   tent  Tent: mean token entropy
//   eata  EATA: entropy with entropy and redundancy filters and weights
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/learn/entropy_objectives.h"
#include "engine/learn/objective.h"
#include "engine/learn/tlm_objective.h"

namespace tlm {

class LlamaModel;

struct MethodSpec {
  std::string name = "tlm";  // tlm | tent | eata
  TlmObjectiveOptions tlm;
  EntropyOptions entropy;    // tent and eata: which positions count
  EataOptions eata;          // eata's margins (its `entropy` is taken from above)
  // True when the objective learns from the answers the job generates (positions = generated).
  bool needs_generated_tokens() const;
};

// The names `method:` accepts.
const std::vector<std::string>& method_names();
std::shared_ptr<Objective> make_objective(const MethodSpec& spec, const LlamaModel& model);

}  // namespace tlm
