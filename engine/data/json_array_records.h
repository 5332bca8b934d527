// Reads a prompt file that is one JSON array of records. The whole file is parsed at once
// (so a syntax error anywhere is a hard error naming line and column: records cannot be
// recovered from a broken array), but invalid UTF-8 inside one record only skips that
// record: the bad bytes are masked before parsing and the record holding them is reported.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/data/prompt_record.h"
#include "engine/data/record_fields.h"

namespace tlm {

struct LocatedRecord {
  int64_t line = 0;     // 1-based line where the element starts
  RecordFields fields;  // ok, or the reason it is skipped
};

// `path` is only used in messages. One entry per array element, in order.
std::vector<LocatedRecord> parse_json_array_records(const std::string& path,
                                                    std::string_view content,
                                                    const std::optional<FieldMapping>& mapping);

}  // namespace tlm
