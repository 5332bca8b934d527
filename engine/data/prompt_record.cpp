#include "engine/data/prompt_record.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"

namespace tlm {

const char* skip_kind_name(SkipKind kind) {
  switch (kind) {
    case SkipKind::kInvalidJson: return "invalid_json";
    case SkipKind::kNotObject: return "not_object";
    case SkipKind::kMissingField: return "missing_field";
    case SkipKind::kNonStringField: return "non_string_field";
    case SkipKind::kEmptyPrompt: return "empty_prompt";
    case SkipKind::kInvalidUtf8: return "invalid_utf8";
  }
  return "unknown";
}

void SkipReport::add(SkippedRecord record) {
  counts[skip_kind_name(record.kind)] += 1;
  records.push_back(std::move(record));
}

nlohmann::json SkipReport::to_json(size_t max_listed) const {
  nlohmann::json out;
  out["total"] = total();
  out["counts"] = nlohmann::json::object();
  for (const auto& [name, count] : counts) out["counts"][name] = count;
  nlohmann::json listed = nlohmann::json::array();
  for (size_t i = 0; i < records.size() && i < max_listed; ++i) {
    const SkippedRecord& r = records[i];
    listed.push_back({{"source", r.source},
                      {"line", r.line},
                      {"kind", skip_kind_name(r.kind)},
                      {"reason", r.reason}});
  }
  out["records"] = std::move(listed);
  out["records_truncated"] = records.size() > max_listed;
  return out;
}

PromptFormat parse_prompt_format(std::string_view name) {
  if (name == "auto") return PromptFormat::kAuto;
  if (name == "json") return PromptFormat::kJsonArray;
  if (name == "jsonl" || name == "ndjson") return PromptFormat::kJsonl;
  if (name == "txt" || name == "text") return PromptFormat::kText;
  TLM_FAIL("unknown prompt file format '", name,
           "' (expected one of: auto, json, jsonl, txt)");
}

const char* prompt_format_name(PromptFormat format) {
  switch (format) {
    case PromptFormat::kAuto: return "auto";
    case PromptFormat::kJsonArray: return "json";
    case PromptFormat::kJsonl: return "jsonl";
    case PromptFormat::kText: return "txt";
  }
  return "unknown";
}

PromptFormat detect_prompt_format(const std::string& path) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.find_last_of('.');
  std::string ext;
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) {
    ext = path.substr(dot + 1);
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  if (ext == "json") return PromptFormat::kJsonArray;
  if (ext == "jsonl" || ext == "ndjson") return PromptFormat::kJsonl;
  if (ext == "txt" || ext == "text") return PromptFormat::kText;
  TLM_FAIL(path, ": cannot tell the prompt file format from the extension '", ext,
           "' (expected .json, .jsonl or .txt); set the format explicitly");
}

}  // namespace tlm
