// LoRA adapters in HF PEFT's on-disk form: adapter_model.safetensors with tensors named
// "base_model.model.<module>.lora_A.weight" [r, in] / ".lora_B.weight" [out, r], and
// adapter_config.json. PEFT's PeftModel.from_pretrained loads what save_peft_adapter writes.
#pragma once

#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "engine/learn/lora.h"

namespace tlm {

// Writes `directory`/adapter_model.safetensors and adapter_config.json from full-size
// tensors named "<module>.lora_A" / "<module>.lora_B" (LoraAdapters::full_state()).
void save_peft_adapter(const std::string& directory, const std::map<std::string, at::Tensor>& state,
                       const LoraConfig& config, const std::string& base_model);

struct PeftAdapter {
  std::map<std::string, at::Tensor> state;  // "<module>.lora_A" / ".lora_B", fp32
  LoraConfig config;                        // r, alpha, dropout, targets from adapter_config.json
};

// Reads a PEFT adapter directory. Throws naming the file and field for a missing or
// malformed adapter_config.json, a non-LORA adapter, or tensors it cannot map.
PeftAdapter load_peft_adapter(const std::string& directory);

}  // namespace tlm
