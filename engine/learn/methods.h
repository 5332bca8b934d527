// The test-time methods `tlm adapt` offers, by name (recipe key `method:`): the one place that
// turns a method's typed settings into its Objective. A new method adds its objective file, a
// case here and a recipe.
//   tlm   TLM (Hu et al., ICML 2025): perplexity minimisation with sample selection (default)
//   tent  Tent: mean token entropy
//   eata  EATA: entropy with entropy and redundancy filters and weights
//   come  COME: Tent or EATA (come_base) minimising the entropy of the opinion
//   sytta SyTTA-style: prompt NLL + entropy of the first G generated tokens + reverse-KL trust
//         region to the frozen base on those tokens
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/learn/entropy_objectives.h"
#include "engine/learn/fisher_regulariser.h"
#include "engine/learn/objective.h"
#include "engine/learn/sytta_objective.h"
#include "engine/learn/tlm_objective.h"

namespace tlm {

class LlamaModel;

struct MethodSpec {
  std::string name = "tlm";  // tlm | tent | eata | come | sytta
  TlmObjectiveOptions tlm;
  EntropyOptions entropy;    // tent, eata, come: which positions count (and G for sytta)
  EataOptions eata;          // eata's margins (its `entropy` is taken from above)
  std::string come_base = "tent";  // come: tent or eata
  SyttaOptions sytta;        // its generated_tokens is taken from entropy
  FisherOptions fisher;      // eata (and come on eata): EATA's Fisher regulariser, off by default
  // True when the objective learns from the answers the job generates (positions = generated).
  bool needs_generated_tokens() const;
};

// The names `method:` accepts.
const std::vector<std::string>& method_names();
std::shared_ptr<Objective> make_objective(const MethodSpec& spec, const LlamaModel& model);

}  // namespace tlm
