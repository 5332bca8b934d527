// Parses one line of a JSONL or plain-text prompt file. Blank lines are not records (they
// are neither returned nor reported); everything else is a record or a reported skip.
#pragma once

#include <optional>
#include <string_view>

#include "engine/data/prompt_record.h"
#include "engine/data/record_fields.h"

namespace tlm {

// `line` excludes the "\n"; a trailing "\r" (CRLF files) is ignored. nullopt for blank lines.
std::optional<RecordFields> parse_jsonl_line(std::string_view line,
                                             const std::optional<FieldMapping>& mapping);
// A text line is the prompt itself, byte for byte (without a trailing "\r").
std::optional<RecordFields> parse_text_line(std::string_view line);

}  // namespace tlm
