// What a Llama-family model looks like as an HF directory: its config.json and
// generation_config.json from a ModelConfig (read from either layout), and the HF names of its
// tensors. `tlm-ckpt merge` writes these for a GGUF base, so that transformers loads the merged
// model as a plain one.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/model_config.h"

namespace tlm {

// config.json (transformers 5 style: rope_parameters; torch dtype float32) for `c`. Throws for a
// model_type transformers has no class for here.
nlohmann::json hf_config_json(const ModelConfig& c);
// generation_config.json: bos and the ids that end generation.
nlohmann::json hf_generation_config_json(const ModelConfig& c, const std::vector<int32_t>& eos_ids);
// Every HF tensor name a model of this config may have (biases, q/k norms, Gemma's extra
// norms and lm_head included whatever the config says: callers keep the ones the weights
// hold), in load order.
std::vector<std::string> hf_tensor_names(const ModelConfig& c);

}  // namespace tlm
