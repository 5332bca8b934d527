// The pattern of a Split pre-tokenizer or a Replace normalizer/decoder: {"String": s} (a
// literal) or {"Regex": r} (Oniguruma syntax, run through PCRE2).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/regex.h"

namespace tlm {

class SplitPattern {
 public:
  static SplitPattern literal(std::string text);
  static SplitPattern regex(const std::string& pattern, const std::string& where);

  // Non-overlapping matches, left to right, as byte ranges.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  std::string replace_all(std::string_view text, const std::string& content) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

SplitPattern parse_split_pattern(const nlohmann::json& config, const std::string& where);

}  // namespace tlm
