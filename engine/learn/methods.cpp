#include "engine/learn/methods.h"

#include <algorithm>

#include "engine/common/error.h"
#include "engine/model/llama_model.h"

namespace tlm {

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names = {"tlm", "tent", "eata", "come", "sytta"};
  return names;
}

bool MethodSpec::needs_generated_tokens() const {
  if (name == "sytta") return true;
  return name != "tlm" && entropy.positions == ScoredPositions::Generated;
}

std::shared_ptr<Objective> make_objective(const MethodSpec& spec, const LlamaModel& model) {
  if (spec.name == "tlm") return std::make_shared<TlmObjective>(spec.tlm);
  if (spec.name == "tent") return std::make_shared<TentObjective>(spec.entropy);
  const bool come = spec.name == "come";
  EntropyOptions entropy = spec.entropy;
  if (come) entropy.measure = EntropyMeasure::Opinion;
  TLM_CHECK(!come || spec.come_base == "tent" || spec.come_base == "eata",
            "objective.come_base must be tent or eata, got '", spec.come_base, "'");
  if (spec.name == "tent" || (come && spec.come_base == "tent")) return std::make_shared<TentObjective>(entropy);
  if (spec.name == "eata" || come) {
    EataOptions o = spec.eata;
    o.entropy = entropy;
    return std::make_shared<EataObjective>(o, model.tp(), model.config().vocab_size, model.device());
  }
  if (spec.name == "sytta") {
    SyttaOptions o = spec.sytta;
    o.generated_tokens = spec.entropy.generated_tokens;
    return std::make_shared<SyttaObjective>(o);
  }
  TLM_FAIL("method must be one of tlm, tent, eata, come, sytta, got '", spec.name, "'");
}

}  // namespace tlm
