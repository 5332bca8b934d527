#include "engine/data/line_records.h"

#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/data/utf8_check.h"

namespace tlm {

namespace {

std::string_view without_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

RecordFields skipped(SkipKind kind, std::string reason) {
  RecordFields out;
  out.ok = false;
  out.kind = kind;
  out.reason = std::move(reason);
  return out;
}

// nlohmann's what() starts with "[json.exception.parse_error.101] parse error at line 1,
// column 7: "; the line is ours to report, so only the column and the detail are kept.
std::string json_error_detail(const std::string& what) {
  size_t at = what.find("column ");
  if (at == std::string::npos) return what;
  return what.substr(at);
}

}  // namespace

std::optional<RecordFields> parse_jsonl_line(std::string_view line,
                                             const std::optional<FieldMapping>& mapping) {
  line = without_cr(line);
  // The UTF-8 check comes first: nlohmann rejects bad bytes as a syntax error, which would
  // hide the real cause.
  size_t bad = find_invalid_utf8(line);
  if (bad != std::string_view::npos) {
    return skipped(SkipKind::kInvalidUtf8, invalid_utf8_message(line, bad));
  }
  if (is_blank_text(std::string(line))) return std::nullopt;
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(line.begin(), line.end());
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (a number like 1e999999)
    return skipped(SkipKind::kInvalidJson, "not valid JSON: " + json_error_detail(e.what()));
  }
  return extract_record_fields(value, mapping);
}

std::optional<RecordFields> parse_text_line(std::string_view line) {
  line = without_cr(line);
  size_t bad = find_invalid_utf8(line);
  if (bad != std::string_view::npos) {
    return skipped(SkipKind::kInvalidUtf8, invalid_utf8_message(line, bad));
  }
  std::string prompt(line);
  if (is_blank_text(prompt)) return std::nullopt;
  RecordFields out;
  out.ok = true;
  out.prompt = std::move(prompt);
  return out;
}

}  // namespace tlm
