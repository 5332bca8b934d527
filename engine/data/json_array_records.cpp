#include "engine/data/json_array_records.h"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/data/utf8_check.h"

namespace tlm {

namespace {

struct Span {
  size_t begin = 0;
  size_t end = 0;  // one past the element's last byte
};

// Offsets of the top-level array's elements. Runs only on text nlohmann has accepted as a
// JSON array, so it just tracks strings and nesting depth: nlohmann 3.11 reports no value
// positions, and records must carry the line they start on.
std::vector<Span> element_spans(std::string_view text) {
  std::vector<Span> spans;
  int depth = 0;
  bool in_string = false;
  bool expect_value = false;  // at depth 1, after '[' or ','
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    if (depth == 1 && expect_value && c != ']') {
      spans.push_back({i, i});
      expect_value = false;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      ++depth;
      if (depth == 1) expect_value = true;
    } else if (c == ']' || c == '}') {
      if (depth == 1 && !spans.empty() && spans.back().end == spans.back().begin) {
        spans.back().end = i;
      }
      --depth;
      if (depth == 0) break;
    } else if (c == ',' && depth == 1) {
      spans.back().end = i;
      expect_value = true;
    }
  }
  return spans;
}

class LineIndex {
 public:
  explicit LineIndex(std::string_view text) {
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\n') newlines_.push_back(i);
    }
  }
  int64_t line_of(size_t offset) const {
    return 1 + (std::lower_bound(newlines_.begin(), newlines_.end(), offset) - newlines_.begin());
  }
  int64_t column_of(size_t offset) const {
    auto it = std::lower_bound(newlines_.begin(), newlines_.end(), offset);
    size_t line_start = it == newlines_.begin() ? 0 : *(it - 1) + 1;
    return static_cast<int64_t>(offset - line_start) + 1;
  }

 private:
  std::vector<size_t> newlines_;
};

}  // namespace

std::vector<LocatedRecord> parse_json_array_records(const std::string& path,
                                                    std::string_view content,
                                                    const std::optional<FieldMapping>& mapping) {
  const LineIndex lines(content);

  // Mask each invalid byte with '?' (same length, so offsets and lines stay true); inside a
  // string the mask keeps the JSON valid and the record holding it is skipped below.
  std::string masked(content);
  std::vector<size_t> bad_bytes;
  for (size_t pos = 0; pos < masked.size();) {
    if (static_cast<unsigned char>(masked[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t len = utf8_sequence_length(masked, pos);
    if (len == 0) {
      bad_bytes.push_back(pos);
      masked[pos] = '?';
      len = 1;
    }
    pos += len;
  }

  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(masked);
  } catch (const nlohmann::json::out_of_range& e) {  // a number like 1e999999
    TLM_FAIL(path, ": not a valid JSON array: ", e.what());
  } catch (const nlohmann::json::parse_error& e) {
    size_t offset = e.byte == 0 ? 0 : std::min<size_t>(e.byte - 1, content.size());
    if (std::binary_search(bad_bytes.begin(), bad_bytes.end(), offset)) {
      TLM_FAIL(path, ": invalid UTF-8 byte outside any string at line ", lines.line_of(offset),
               ", column ", lines.column_of(offset), "; cannot read the JSON array");
    }
    std::string what = e.what();
    size_t detail = what.find(": ");
    std::string hint;
    size_t first = content.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos && content[first] == '{') {
      hint = " (the file starts with an object: if it holds one JSON object per line, name it"
             " .jsonl or set the format to jsonl)";
    }
    TLM_FAIL(path, ": not a valid JSON array: error at line ", lines.line_of(offset),
             ", column ", lines.column_of(offset), ": ",
             detail == std::string::npos ? what : what.substr(detail + 2), hint);
  }
  TLM_CHECK(doc.is_array(), path, ": the top-level JSON value is ", doc.type_name(),
            ", expected an array of records (use .jsonl for one object per line)");

  std::vector<Span> spans = element_spans(masked);
  TLM_CHECK(spans.size() == doc.size(), path, ": internal error locating array elements (found ",
            spans.size(), " of ", doc.size(), ")");

  std::vector<LocatedRecord> out;
  out.reserve(spans.size());
  size_t next_bad = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    LocatedRecord rec;
    rec.line = lines.line_of(spans[i].begin);
    while (next_bad < bad_bytes.size() && bad_bytes[next_bad] < spans[i].begin) ++next_bad;
    if (next_bad < bad_bytes.size() && bad_bytes[next_bad] < spans[i].end) {
      size_t at = bad_bytes[next_bad];
      rec.fields.ok = false;
      rec.fields.kind = SkipKind::kInvalidUtf8;
      rec.fields.reason = str_cat(invalid_utf8_message(content, at), " of line ", lines.line_of(at));
    } else {
      rec.fields = extract_record_fields(doc[i], mapping);
    }
    out.push_back(std::move(rec));
  }
  return out;
}

}  // namespace tlm
