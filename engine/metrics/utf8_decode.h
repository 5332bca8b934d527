// Lenient UTF-8 decoding for metrics: metric inputs are model outputs, which may hold
// stray bytes; those decode as one invalid unit each instead of throwing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tlm {

constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

// Decodes the character at text[pos] into *cp and returns its byte length; a byte that
// does not start a well-formed sequence gives cp = kInvalidCodePoint and length 1.
size_t decode_utf8(std::string_view text, size_t pos, uint32_t* cp);

// The text with every invalid byte replaced by U+FFFD, as Python's errors="replace" would
// per byte: what a Python str holding these bytes could have been.
std::string sanitize_utf8(std::string_view text);

}  // namespace tlm
