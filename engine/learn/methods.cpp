#include "engine/learn/methods.h"

#include <algorithm>

#include "engine/common/error.h"
#include "engine/model/llama_model.h"

namespace tlm {

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names = {"tlm", "tent", "eata"};
  return names;
}

bool MethodSpec::needs_generated_tokens() const {
  return name != "tlm" && entropy.positions == ScoredPositions::Generated;
}

std::shared_ptr<Objective> make_objective(const MethodSpec& spec, const LlamaModel& model) {
  if (spec.name == "tlm") return std::make_shared<TlmObjective>(spec.tlm);
  if (spec.name == "tent") return std::make_shared<TentObjective>(spec.entropy);
  if (spec.name == "eata") {
    EataOptions o = spec.eata;
    o.entropy = spec.entropy;
    return std::make_shared<EataObjective>(o, model.tp(), model.config().vocab_size, model.device());
  }
  TLM_FAIL("method must be one of tlm, tent, eata, got '", spec.name, "'");
}

}  // namespace tlm
