#include "engine/data/utf8_check.h"

#include <cstdint>
#include <cstdio>

namespace tlm {

size_t utf8_sequence_length(std::string_view text, size_t pos) {
  const size_t n = text.size() - pos;
  auto byte = [&](size_t i) { return static_cast<uint8_t>(text[pos + i]); };
  auto cont = [&](size_t i) { return i < n && (byte(i) & 0xC0) == 0x80; };
  uint8_t b0 = byte(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (n < 2) return 0;
    uint8_t b1 = byte(1);
    // E0 needs A0..BF (else overlong); ED needs 80..9F (else a surrogate).
    if (b0 == 0xE0 && b1 < 0xA0) return 0;
    if (b0 == 0xED && b1 > 0x9F) return 0;
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (n < 2) return 0;
    uint8_t b1 = byte(1);
    // F0 needs 90..BF (else overlong); F4 needs 80..8F (else above U+10FFFF).
    if (b0 == 0xF0 && b1 < 0x90) return 0;
    if (b0 == 0xF4 && b1 > 0x8F) return 0;
    return cont(1) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

size_t find_invalid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // ASCII runs dominate prompt files; skip them without the full check.
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t len = utf8_sequence_length(text, pos);
    if (len == 0) return pos;
    pos += len;
  }
  return std::string_view::npos;
}

std::string invalid_utf8_message(std::string_view text, size_t offset) {
  size_t line_start = text.rfind('\n', offset == 0 ? 0 : offset - 1);
  line_start = (line_start == std::string_view::npos || offset == 0) ? 0 : line_start + 1;
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned>(static_cast<uint8_t>(text[offset])));
  return std::string("invalid UTF-8: byte ") + hex + " at column " +
         std::to_string(offset - line_start + 1);
}

}  // namespace tlm
