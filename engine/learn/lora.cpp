#include "engine/learn/lora.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include "dist/lora_parallel.h"
#include "engine/common/error.h"

namespace tlm {

const std::vector<std::string>& lora_target_names() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

namespace {

std::string short_name(const std::string& module) {
  return module.substr(module.rfind('.') + 1);
}

}  // namespace

LoraAdapters::LoraAdapters(LlamaModel& model, const LoraConfig& config)
    : model_(model), config_(config) {
  TLM_CHECK(config.rank > 0, "lora rank must be positive, got ", config.rank);
  TLM_CHECK(config.dropout >= 0.0 && config.dropout < 1.0, "lora dropout must be in [0, 1), got ",
            config.dropout);
  TLM_CHECK(!config.targets.empty(), "lora targets must not be empty");
  for (const std::string& t : config.targets) {
    const auto& names = lora_target_names();
    TLM_CHECK(std::find(names.begin(), names.end(), t) != names.end(), "lora target '", t,
              "' is not a projection (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(config.seed);
  at::NoGradGuard no_grad;
  for (const Projection& p : model.projections()) {
    const std::string s = short_name(p.name);
    if (std::find(config.targets.begin(), config.targets.end(), s) == config.targets.end()) continue;
    const int64_t in = p.in_features(), out = p.out_features();
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    // Drawn on the host from the seed (the same adapter on every device and TP degree), then
    // moved to the model's device; LoRA tensors are fp32 whatever the base dtype.
    at::Tensor A = at::empty({config.rank, in}, at::kFloat).uniform_(-bound, bound, gen).to(model.device());
    at::Tensor B = at::zeros({out, config.rank}, at::TensorOptions().dtype(at::kFloat).device(model.device()));
    p.attach_lora(A, B, config.scale());
    LoraSlot* slot = p.lora();
    slot->dropout = config.dropout;
    slot->A.set_requires_grad(true);
    slot->B.set_requires_grad(true);
    modules_.push_back(p);
  }
  TLM_CHECK(!modules_.empty(), "no projection matched the lora targets");
}

std::vector<at::Tensor> LoraAdapters::parameters() const {
  std::vector<at::Tensor> out;
  for (const Projection& p : modules_) {
    out.push_back(p.lora()->A);
    out.push_back(p.lora()->B);
  }
  return out;
}

std::vector<LoraSlot*> LoraAdapters::slots() const {
  std::vector<LoraSlot*> out;
  for (const Projection& p : modules_) out.push_back(p.lora());
  return out;
}

std::vector<std::string> LoraAdapters::parameter_names() const {
  std::vector<std::string> out;
  for (const Projection& p : modules_) {
    out.push_back(p.name + ".lora_A");
    out.push_back(p.name + ".lora_B");
  }
  return out;
}

const LoraPart& LoraAdapters::part(size_t i) const {
  const LoraSlot& s = *modules_.at(i / 2).lora();
  return i % 2 == 0 ? s.a_part : s.b_part;
}

bool LoraAdapters::owns(size_t i) const { return part(i).owner; }

std::vector<int64_t> LoraAdapters::full_shape(size_t i) const { return part(i).full_shape; }

at::Tensor LoraAdapters::assemble_full(size_t i, const at::Tensor& local) const {
  return assemble_full_lora(local, part(i), model_.tp());
}

at::Tensor LoraAdapters::local_part(size_t i, const at::Tensor& full) const { return part(i).slice_of(full); }

void LoraAdapters::reduce_gradients(const CommunicatorPtr& tp, const CommunicatorPtr& dp) {
  reduce_lora_gradients(slots(), tp, dp);
}

double LoraAdapters::gradient_norm(const CommunicatorPtr& tp) const { return lora_gradient_norm(slots(), tp); }

nlohmann::json LoraAdapters::describe() const {
  return {{"trainable", "lora"}, {"lora_rank", config_.rank}, {"lora_alpha", config_.alpha},
          {"lora_targets", config_.targets}};
}

void LoraAdapters::set_enabled(bool enabled) {
  for (const Projection& p : modules_) p.lora()->enabled = enabled;
}

void LoraAdapters::set_training(bool training) {
  for (const Projection& p : modules_) p.lora()->training = training;
}

void LoraAdapters::use_row_states(const std::vector<StateSnapshot>& rows) {
  TLM_CHECK(!rows.empty(), "use_row_states: no rows");
  if (rows != row_states_) {  // shared_ptr equality: the same snapshots in the same order
    const std::vector<at::Tensor> live = parameters();
    row_stacks_.clear();
    for (size_t k = 0; k < modules_.size(); ++k) {
      std::vector<at::Tensor> a, b;
      for (const StateSnapshot& r : rows) {
        TLM_CHECK(!r || r->size() == live.size(), "use_row_states: a state of ", r ? r->size() : 0,
                  " tensors for ", live.size(), " LoRA tensors");
        a.push_back(r ? (*r)[2 * k] : at::zeros_like(live[2 * k]));
        b.push_back(r ? (*r)[2 * k + 1] : at::zeros_like(live[2 * k + 1]));
      }
      row_stacks_.emplace_back(at::stack(a), at::stack(b));
    }
    row_states_ = rows;
  }
  for (size_t k = 0; k < modules_.size(); ++k) {
    LoraSlot& slot = *modules_[k].lora();
    TLM_CHECK(!slot.merged, "use_row_states: ", modules_[k].name, " has its adapter merged into the weight");
    slot.rows_A = row_stacks_[k].first;
    slot.rows_B = row_stacks_[k].second;
  }
}

void LoraAdapters::clear_row_states() {
  for (const Projection& p : modules_) {
    p.lora()->rows_A = at::Tensor();
    p.lora()->rows_B = at::Tensor();
  }
}

void LoraAdapters::merge() {
  for (const Projection& p : modules_) {
    if (p.column) p.column->merge_lora();
    else p.row->merge_lora();
  }
}

void LoraAdapters::unmerge() {
  for (const Projection& p : modules_) {
    if (p.column) p.column->unmerge_lora();
    else p.row->unmerge_lora();
  }
}

}  // namespace tlm
