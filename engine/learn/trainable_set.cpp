#include "engine/learn/trainable_set.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "engine/common/error.h"

namespace tlm {

void TrainableSet::use_row_states(const std::vector<StateSnapshot>&) {
  TLM_CHECK(false, trainable_kind_name(kind()), " trainables do not decode different states in one batch");
}

std::string trainable_kind_name(TrainableKind kind) {
  return kind == TrainableKind::Lora ? "lora" : "norm-affine";
}

TrainableKind parse_trainable_kind(const std::string& name) {
  if (name == "lora") return TrainableKind::Lora;
  if (name == "norm-affine") return TrainableKind::NormAffine;
  TLM_FAIL("trainable '", name, "' is not one of: lora, norm-affine");
}

std::map<std::string, at::Tensor> TrainableSet::full_state() const {
  std::map<std::string, at::Tensor> out;
  const std::vector<at::Tensor> params = parameters();
  const std::vector<std::string> names = parameter_names();
  for (size_t i = 0; i < params.size(); ++i) out[names[i]] = assemble_full(i, params[i]);
  return out;
}

void TrainableSet::load_full_state(const std::map<std::string, at::Tensor>& state, const std::string& source) {
  at::NoGradGuard no_grad;
  const std::vector<at::Tensor> params = parameters();
  const std::vector<std::string> names = parameter_names();
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = state.find(names[i]);
    TLM_CHECK(it != state.end(), source, ": no tensor '", names[i], "' (the ", trainable_kind_name(kind()),
              " set needs ", names.size(), " tensors)");
    const std::vector<int64_t> want = full_shape(i);
    TLM_CHECK(it->second.sizes().vec() == want, source, ": '", names[i], "' has shape ", it->second.sizes(),
              ", which does not fit the model: it needs ", at::IntArrayRef(want));
    at::Tensor p = params[i];
    p.copy_(local_part(i, it->second.to(at::kFloat)));
  }
}

}  // namespace tlm
