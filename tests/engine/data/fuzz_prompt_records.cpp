// libFuzzer target: prompt records from arbitrary bytes, as JSONL lines (with and without a
// field mapping), as text lines and as one JSON array. Only tlm::Error may escape; a record
// that parses has a non-blank prompt that is valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/common/error.h"
#include "engine/data/json_array_records.h"
#include "engine/data/line_records.h"
#include "engine/data/utf8_check.h"

namespace {

void check(const tlm::RecordFields& r) {
  if (!r.ok) return;
  if (tlm::is_blank_text(r.prompt) || tlm::find_invalid_utf8(r.prompt) != std::string_view::npos) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const tlm::FieldMapping mapping{"question", "context", "answer"};
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(begin, end - begin);
    try {
      if (auto r = tlm::parse_jsonl_line(line, std::nullopt)) check(*r);
      if (auto r = tlm::parse_jsonl_line(line, mapping)) check(*r);
      if (auto r = tlm::parse_text_line(line)) check(*r);
    } catch (const tlm::Error&) {
    }
    begin = end + 1;
  }
  try {
    for (const tlm::LocatedRecord& r : tlm::parse_json_array_records("fuzz.json", text, std::nullopt)) check(r.fields);
  } catch (const tlm::Error&) {
  }
  return 0;
}
