// Strict UTF-8 validation for prompt records (the rules of Unicode Table 3-7: no overlong
// forms, no surrogates, nothing above U+10FFFF), so a record with bad bytes is reported as
// invalid UTF-8 instead of surfacing later as a JSON or tokenizer error.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tlm {

// Byte length of the well-formed UTF-8 sequence starting at text[pos], or 0 when the bytes
// there do not start one (truncated, overlong, surrogate, out of range, stray continuation).
size_t utf8_sequence_length(std::string_view text, size_t pos);

// Offset of the first byte that does not start a well-formed sequence, or npos.
size_t find_invalid_utf8(std::string_view text);

// "invalid UTF-8: byte 0xNN at column C" for the invalid byte at `offset`; the column is
// 1-based, in bytes, counted from the start of the line holding the byte.
std::string invalid_utf8_message(std::string_view text, size_t offset);

}  // namespace tlm
