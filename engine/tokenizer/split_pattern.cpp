#include "engine/tokenizer/split_pattern.h"

#include "engine/common/error.h"

namespace tlm {

SplitPattern SplitPattern::literal(std::string text) {
  SplitPattern p;
  p.literal_ = std::move(text);
  return p;
}

SplitPattern SplitPattern::regex(const std::string& pattern, const std::string& where) {
  SplitPattern p;
  p.regex_ = std::make_shared<const Regex>(pattern, where);
  return p;
}

std::vector<std::pair<size_t, size_t>> SplitPattern::find_all(std::string_view text) const {
  if (regex_) return regex_->find_all(text);
  std::vector<std::pair<size_t, size_t>> matches;
  if (literal_.empty()) return matches;
  size_t pos = 0;
  while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
    matches.emplace_back(pos, pos + literal_.size());
    pos += literal_.size();
  }
  return matches;
}

std::string SplitPattern::replace_all(std::string_view text, const std::string& content) const {
  std::string out;
  size_t prev = 0;
  for (const auto& [b, e] : find_all(text)) {
    out.append(text.substr(prev, b - prev));
    out += content;
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}

SplitPattern parse_split_pattern(const nlohmann::json& config, const std::string& where) {
  TLM_CHECK(config.is_object() && config.size() == 1, where,
            ": expected {\"String\": ...} or {\"Regex\": ...}");
  if (config.contains("String")) return SplitPattern::literal(config.at("String").get<std::string>());
  if (config.contains("Regex")) return SplitPattern::regex(config.at("Regex").get<std::string>(), where);
  TLM_FAIL(where, ": expected {\"String\": ...} or {\"Regex\": ...}, got ", config.dump());
}

}  // namespace tlm
