// What a prompt file yields: good records (a prompt, maybe a reference) and a report of the
// records that were skipped, with where and why. A bad record never stops a stream; only
// an unreadable file (missing, or a JSON array that does not parse) is a hard error.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tlm {

struct PromptRecord {
  std::string prompt;
  std::optional<std::string> reference;
  std::string source;  // the file path as given
  int64_t line = 0;    // 1-based; for a JSON array, the line where the record's value starts
  int64_t index = 0;   // 0-based position among the good records of the file (the offset)
};

enum class SkipKind {
  kInvalidJson,     // the record (a JSONL line) is not valid JSON
  kNotObject,       // valid JSON but not an object
  kMissingField,    // no prompt field (none of the conventions, or the mapped field)
  kNonStringField,  // the prompt, input or reference field has the wrong type
  kEmptyPrompt,     // the prompt is empty or whitespace-only
  kInvalidUtf8,     // the record's bytes are not valid UTF-8
};

// Stable snake_case names ("invalid_json", "not_object", "missing_field",
// "non_string_field", "empty_prompt", "invalid_utf8"): the keys of summary.json's counts.
const char* skip_kind_name(SkipKind kind);

struct SkippedRecord {
  std::string source;
  int64_t line = 0;
  SkipKind kind = SkipKind::kInvalidJson;
  std::string reason;  // names the field (or the byte/column) to look at
};

struct SkipReport {
  std::vector<SkippedRecord> records;
  std::map<std::string, int64_t> counts;  // skip_kind_name -> count

  void add(SkippedRecord record);
  int64_t total() const { return static_cast<int64_t>(records.size()); }
  // {"total": n, "counts": {...}, "records": [{"source", "line", "reason", "kind"}...]} with
  // at most `max_listed` records listed ("records_truncated": true when more were skipped).
  nlohmann::json to_json(size_t max_listed = 100) const;
};

enum class PromptFormat {
  kAuto,       // from the extension: .json, .jsonl/.ndjson, .txt
  kJsonArray,  // one JSON array of objects: [ {...}, ... ]
  kJsonl,      // one JSON object per line
  kText,       // one prompt per non-blank line
};

// "auto", "json", "jsonl" (or "ndjson"), "txt" (or "text"); throws on anything else.
PromptFormat parse_prompt_format(std::string_view name);
const char* prompt_format_name(PromptFormat format);
// The format a path's extension implies; throws naming the path when there is none.
PromptFormat detect_prompt_format(const std::string& path);

// Explicit field names, replacing the built-in conventions. The prompt is
// `prompt_field` + "\n" + `input_field` (the input only when present and non-empty).
struct FieldMapping {
  std::string prompt_field;
  std::optional<std::string> input_field;
  std::optional<std::string> reference_field;
};

struct PromptStreamOptions {
  PromptFormat format = PromptFormat::kAuto;
  std::optional<FieldMapping> mapping;
};

}  // namespace tlm
