// What a post-processor adds around a single sequence when special tokens are requested
// (HF add_special_tokens=True). Parsed from tokenizer.json "post_processor": TemplateProcessing,
// RobertaProcessing, BertProcessing, ByteLevel (adds nothing) and Sequence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tlm {

struct PostProcessor {
  std::vector<int32_t> prefix;  // e.g. BOS
  std::vector<int32_t> suffix;  // e.g. EOS
};

PostProcessor parse_post_processor(const nlohmann::json& config, const std::string& where);

}  // namespace tlm
