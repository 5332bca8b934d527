// LoRA adapters on the model's projections, as PEFT defines them: the branch
// scale * B(A(dropout(x))) with scale = alpha / rank, A initialised Kaiming-uniform
// (a = sqrt(5), so U(-1/sqrt(in), 1/sqrt(in))) and B zero. Every adapter is drawn full-size
// from one seeded generator in module order and then sliced by the layer, so any TP degree
// starts from the same adapter. Only these tensors ever require gradients. They are fp32 on
// the model's device whatever the base dtype (PEFT's mixed-precision rule: the branch input
// is cast to fp32, the branch output back to the base dtype before it joins the base output).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "engine/learn/trainable_set.h"
#include "engine/model/llama_model.h"

namespace tlm {

struct LoraConfig {
  std::vector<std::string> targets = {"q_proj", "v_proj"};  // short names: q_proj ... down_proj
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  uint64_t seed = 42;
  double scale() const { return alpha / static_cast<double>(rank); }
};

// The short projection names LoRA can target.
const std::vector<std::string>& lora_target_names();

class LoraAdapters : public TrainableSet {
 public:
  // Attaches fresh adapters to every projection whose short name is in config.targets.
  // Throws naming the bad target when one is not a projection name.
  LoraAdapters(LlamaModel& model, const LoraConfig& config);

  const LoraConfig& config() const { return config_; }
  const std::vector<Projection>& modules() const { return modules_; }
  // The layers' LoRA slots, module order.
  std::vector<LoraSlot*> slots() const;
  bool owns(size_t i) const override;

  TrainableKind kind() const override { return TrainableKind::Lora; }
  // A and B of each module, module order; names "<module>.lora_A", "<module>.lora_B".
  std::vector<at::Tensor> parameters() const override;
  std::vector<std::string> parameter_names() const override;
  std::vector<int64_t> full_shape(size_t i) const override;
  at::Tensor assemble_full(size_t i, const at::Tensor& local) const override;
  at::Tensor local_part(size_t i, const at::Tensor& full) const override;
  void reduce_gradients(const CommunicatorPtr& tp, const CommunicatorPtr& dp) override;
  double gradient_norm(const CommunicatorPtr& tp) const override;
  // Adapters off: the model computes the base output (offline scoring).
  void set_enabled(bool enabled) override;
  // Dropout on the LoRA input is active only while training.
  void set_training(bool training) override;
  // Per row, its adapter's A and B stacked per module ([rows, r, in], [rows, out, r]; zeros
  // for a row without one), kept and reused while the same rows come back in the same order.
  void use_row_states(const std::vector<StateSnapshot>& rows) override;
  void clear_row_states() override;
  nlohmann::json describe() const override;

  void merge();
  void unmerge();

 private:
  const LoraPart& part(size_t i) const;

  LlamaModel& model_;
  LoraConfig config_;
  std::vector<Projection> modules_;
  std::vector<StateSnapshot> row_states_;                // the rows the stacks below are for
  std::vector<std::pair<at::Tensor, at::Tensor>> row_stacks_;  // per module: rows' A, rows' B
};

}  // namespace tlm
