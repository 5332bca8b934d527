// Norm-affine tuning: the RMSNorm weights train instead of LoRA (`trainable: norm-affine`),
// as PEFT's LN tuning does (peft.LNTuningConfig: a trainable copy of each targeted norm, the
// base weight kept for the adapter-off model). Each copy is fp32 on the model's device,
// initialised to the base weight. RMSNorm weights are replicated over TP and every rank
// receives the full gradient of its norm input (column-parallel inputs go through
// copy_to_tp_region), so gradients are identical over TP and summed only over DP.
#pragma once

#include <string>
#include <vector>

#include "engine/learn/trainable_set.h"
#include "engine/model/llama_model.h"

namespace tlm {

// The short names norm-affine tuning can target (PEFT's LN-tuning names for Llama).
const std::vector<std::string>& norm_target_names();

class NormAffine : public TrainableSet {
 public:
  // Attaches a trainable copy to every norm whose short name is in `targets` (default: all
  // of input_layernorm, post_attention_layernorm, norm). Throws naming a bad target.
  NormAffine(LlamaModel& model, std::vector<std::string> targets = norm_target_names());

  const std::vector<std::string>& targets() const { return targets_; }
  // Module names in model order ("model.layers.0.input_layernorm", ..., "model.norm").
  std::vector<std::string> module_names() const;

  TrainableKind kind() const override { return TrainableKind::NormAffine; }
  // One tensor per norm, named "<module>.weight".
  std::vector<at::Tensor> parameters() const override;
  std::vector<std::string> parameter_names() const override;
  bool owns(size_t) const override { return tp_rank_ == 0; }  // replicated: TP rank 0 speaks
  std::vector<int64_t> full_shape(size_t i) const override;
  at::Tensor assemble_full(size_t i, const at::Tensor& local) const override;
  at::Tensor local_part(size_t i, const at::Tensor& full) const override;
  void reduce_gradients(const CommunicatorPtr& tp, const CommunicatorPtr& dp) override;
  double gradient_norm(const CommunicatorPtr& tp) const override;
  void set_enabled(bool enabled) override;
  void set_training(bool) override {}
  // Per row, its state's weight of each norm ([rows, 1, H]; the base weight for a row without
  // one), kept and reused while the same rows come back in the same order.
  void use_row_states(const std::vector<StateSnapshot>& rows) override;
  void clear_row_states() override;
  nlohmann::json describe() const override;

 private:
  std::vector<Norm> norms_;
  std::vector<std::string> targets_;
  std::vector<StateSnapshot> row_states_;  // the rows the stacks below are for
  std::vector<at::Tensor> row_stacks_;     // per norm
  int tp_rank_ = 0;
};

}  // namespace tlm
