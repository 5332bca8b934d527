#include "engine/learn/norm_affine.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "engine/common/error.h"

namespace tlm {

const std::vector<std::string>& norm_target_names() {
  static const std::vector<std::string> names = {"input_layernorm", "post_attention_layernorm", "norm"};
  return names;
}

NormAffine::NormAffine(LlamaModel& model, std::vector<std::string> targets)
    : targets_(std::move(targets)), tp_rank_(model.tp()->rank()) {
  TLM_CHECK(!targets_.empty(), "norm-affine targets must not be empty");
  // Its norms hold 1 + w (model/llama_model.cpp): the tuned weights and their LN-tuning export
  // would be off by one from HF's. Not supported until the export subtracts it.
  TLM_CHECK(!model.config().norm_plus_one, "norm-affine tuning of ", model.config().model_type,
            " (norm weights applied as 1 + w) is not supported; use LoRA");
  const auto& known = norm_target_names();
  for (const std::string& t : targets_)
    TLM_CHECK(std::find(known.begin(), known.end(), t) != known.end(), "norm-affine target '", t,
              "' is not a norm (input_layernorm, post_attention_layernorm, norm)");
  at::NoGradGuard no_grad;
  for (const Norm& n : model.norms()) {
    const std::string short_name = n.name.substr(n.name.rfind('.') + 1);
    if (std::find(targets_.begin(), targets_.end(), short_name) == targets_.end()) continue;
    TLM_CHECK(!n.slot->tuned.defined(), n.name, ": a trainable copy is already attached");
    n.slot->tuned = n.slot->weight.to(at::kFloat).clone().set_requires_grad(true);
    n.slot->enabled = true;
    norms_.push_back(n);
  }
  TLM_CHECK(!norms_.empty(), "no norm matched the norm-affine targets");
}

std::vector<std::string> NormAffine::module_names() const {
  std::vector<std::string> out;
  for (const Norm& n : norms_) out.push_back(n.name);
  return out;
}

std::vector<at::Tensor> NormAffine::parameters() const {
  std::vector<at::Tensor> out;
  for (const Norm& n : norms_) out.push_back(n.slot->tuned);
  return out;
}

std::vector<std::string> NormAffine::parameter_names() const {
  std::vector<std::string> out;
  for (const Norm& n : norms_) out.push_back(n.name + ".weight");
  return out;
}

std::vector<int64_t> NormAffine::full_shape(size_t i) const { return norms_.at(i).slot->tuned.sizes().vec(); }

at::Tensor NormAffine::assemble_full(size_t, const at::Tensor& local) const { return local.detach().clone(); }

at::Tensor NormAffine::local_part(size_t, const at::Tensor& full) const { return full; }

void NormAffine::reduce_gradients(const CommunicatorPtr&, const CommunicatorPtr& dp) {
  at::NoGradGuard no_grad;
  if (dp->size() == 1) return;
  std::vector<at::Tensor> grads;
  for (const Norm& n : norms_) {
    at::Tensor& p = n.slot->tuned;
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad().reshape({-1}));
  }
  at::Tensor bucket = at::cat(grads);
  dp->all_reduce(bucket, ReduceOp::Sum);
  int64_t offset = 0;
  for (const Norm& n : norms_) {
    at::Tensor g = n.slot->tuned.mutable_grad();
    g.copy_(bucket.narrow(0, offset, g.numel()).view_as(g));
    offset += g.numel();
  }
}

double NormAffine::gradient_norm(const CommunicatorPtr&) const {
  at::NoGradGuard no_grad;
  // Summed on the gradients' device: one host value at the end.
  at::Tensor sum_sq = at::zeros({}, norms_.front().slot->tuned.options().dtype(at::kDouble).requires_grad(false));
  for (const Norm& n : norms_)
    if (n.slot->tuned.grad().defined()) sum_sq += at::linalg_vector_norm(n.slot->tuned.grad().to(at::kDouble), 2).pow(2);
  return std::sqrt(sum_sq.item<double>());
}

void NormAffine::use_row_states(const std::vector<StateSnapshot>& rows) {
  TLM_CHECK(!rows.empty(), "use_row_states: no rows");
  if (rows != row_states_) {  // shared_ptr equality: the same snapshots in the same order
    row_stacks_.clear();
    for (size_t k = 0; k < norms_.size(); ++k) {
      std::vector<at::Tensor> w;
      for (const StateSnapshot& r : rows) {
        TLM_CHECK(!r || r->size() == norms_.size(), "use_row_states: a state of ", r ? r->size() : 0, " tensors for ",
                  norms_.size(), " norms");
        w.push_back(r ? (*r)[k].detach() : norms_[k].slot->weight.to(at::kFloat));
      }
      row_stacks_.push_back(at::stack(w).unsqueeze(1));  // [rows, 1, H]
    }
    row_states_ = rows;
  }
  for (size_t k = 0; k < norms_.size(); ++k) norms_[k].slot->rows = row_stacks_[k];
}

void NormAffine::clear_row_states() {
  for (const Norm& n : norms_) n.slot->rows = at::Tensor();
}

void NormAffine::set_enabled(bool enabled) {
  for (const Norm& n : norms_) n.slot->enabled = enabled;
}

nlohmann::json NormAffine::describe() const { return {{"trainable", "norm-affine"}, {"norm_targets", targets_}}; }

}  // namespace tlm
