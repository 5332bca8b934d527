// Adapters in HF PEFT's on-disk form: adapter_model.safetensors and adapter_config.json.
//   LoRA      (peft_type LORA):      "base_model.model.<module>.lora_A.weight" [r, in] and
//                                    ".lora_B.weight" [out, r]
//   LN tuning (peft_type LN_TUNING): "base_model.model.<module>.ln_tuning_layers.weight" [H],
//                                    the trained norm weight itself (norm-affine tuning)
// PEFT's PeftModel.from_pretrained loads what these functions write.
#pragma once

#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include <memory>

#include <nlohmann/json.hpp>

#include "engine/learn/lora.h"
#include "engine/learn/norm_affine.h"

namespace tlm {

// Writes `directory`/adapter_model.safetensors and adapter_config.json from full-size
// tensors named "<module>.lora_A" / "<module>.lora_B" (LoraAdapters::full_state()).
void save_peft_adapter(const std::string& directory, const std::map<std::string, at::Tensor>& state,
                       const LoraConfig& config, const std::string& base_model);

// The LN-tuning form of full-size norm weights named "<module>.weight" (NormAffine::full_state()).
void save_peft_ln_tuning(const std::string& directory, const std::map<std::string, at::Tensor>& state,
                         const std::vector<std::string>& targets, const std::string& base_model);

// Either form from a trainable set's description (TrainableSet::describe(), also the
// checkpoint's method record): "trainable" "lora" with lora_rank / lora_alpha / lora_targets
// (dropout `lora_dropout`), or "norm-affine" with norm_targets. Throws naming `source` when
// the description lacks a field.
void save_peft(const std::string& directory, const std::map<std::string, at::Tensor>& state,
               const nlohmann::json& description, const std::string& base_model, const std::string& source,
               double lora_dropout = 0.0);

struct PeftAdapter {
  TrainableKind kind = TrainableKind::Lora;
  // LoRA: "<module>.lora_A" / ".lora_B"; LN tuning: "<module>.weight"; fp32.
  std::map<std::string, at::Tensor> state;
  LoraConfig config;                      // LoRA: r, alpha, dropout, targets from adapter_config.json
  std::vector<std::string> norm_targets;  // LN tuning: target_modules
};

// Reads a PEFT adapter directory. Throws naming the file and field for a missing or
// malformed adapter_config.json, a type other than LORA / LN_TUNING, or tensors it cannot map.
PeftAdapter load_peft_adapter(const std::string& directory);

// Attaches `adapter` to `model` (LoRA on its projections, or tuned norm weights) and returns
// the trainable set holding it. Throws naming `source` when a tensor does not fit.
std::unique_ptr<TrainableSet> attach_peft_adapter(LlamaModel& model, const PeftAdapter& adapter,
                                                  const std::string& source);

}  // namespace tlm
