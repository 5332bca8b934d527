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

std::map<std::string, at::Tensor> LoraAdapters::full_state() const {
  std::map<std::string, at::Tensor> out;
  const CommunicatorPtr& tp = model_.tp();
  for (const Projection& p : modules_) {
    const LoraSlot& s = *p.lora();
    out[p.name + ".lora_A"] = assemble_full_lora(s.A, s.a_part, tp);
    out[p.name + ".lora_B"] = assemble_full_lora(s.B, s.b_part, tp);
  }
  return out;
}

void LoraAdapters::load_full_state(const std::map<std::string, at::Tensor>& state,
                                   const std::string& source) {
  at::NoGradGuard no_grad;
  for (const Projection& p : modules_) {
    LoraSlot& s = *p.lora();
    auto a = state.find(p.name + ".lora_A");
    auto b = state.find(p.name + ".lora_B");
    TLM_CHECK(a != state.end() && b != state.end(), source, ": no LoRA tensors for module '",
              p.name, "'");
    const std::vector<int64_t> want_a = {config_.rank, p.in_features()};
    const std::vector<int64_t> want_b = {p.out_features(), config_.rank};
    TLM_CHECK(a->second.sizes().vec() == want_a && b->second.sizes().vec() == want_b, source,
              ": module '", p.name, "': lora_A ", a->second.sizes(), " / lora_B ",
              b->second.sizes(), " do not fit the model, which needs ", at::IntArrayRef(want_a),
              " / ", at::IntArrayRef(want_b));
    const at::Tensor A = a->second.to(at::kFloat);
    const at::Tensor B = b->second.to(at::kFloat);
    s.A.copy_(s.a_part.slice_of(A));
    s.B.copy_(s.b_part.slice_of(B));
  }
}

void LoraAdapters::set_enabled(bool enabled) {
  for (const Projection& p : modules_) p.lora()->enabled = enabled;
}

void LoraAdapters::set_training(bool training) {
  for (const Projection& p : modules_) p.lora()->training = training;
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
