#include "engine/metrics/utf8_decode.h"

namespace tlm {

size_t decode_utf8(std::string_view text, size_t pos, uint32_t* cp) {
  auto b = [&](size_t i) { return static_cast<uint8_t>(text[pos + i]); };
  auto cont = [&](size_t i) { return pos + i < text.size() && (b(i) & 0xC0) == 0x80; };
  uint8_t b0 = b(0);
  *cp = kInvalidCodePoint;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
    *cp = ((b0 & 0x1Fu) << 6) | (b(1) & 0x3Fu);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
    uint32_t v = ((b0 & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
    if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) return 1;
    *cp = v;
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    uint32_t v = ((b0 & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) |
                 (b(3) & 0x3Fu);
    if (v < 0x10000 || v > 0x10FFFF) return 1;
    *cp = v;
    return 4;
  }
  return 1;
}

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    uint32_t cp;
    size_t len = decode_utf8(text, pos, &cp);
    if (cp == kInvalidCodePoint) {
      out += "\xEF\xBF\xBD";
    } else {
      out.append(text.substr(pos, len));
    }
    pos += len;
  }
  return out;
}

}  // namespace tlm
