// UTF-8 and Unicode helpers shared by the tokenizer components. Character classes follow
// the definitions HF `tokenizers` (Rust) uses, so splitting decisions match it: White_Space
// for "whitespace", Rust regex's \w for "word", Rust char::is_numeric for "numeric".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tlm {

constexpr uint32_t kReplacementChar = 0xFFFD;

// Decodes the code point at `pos` of valid UTF-8 and advances `pos` past it.
uint32_t utf8_decode_at(std::string_view s, size_t& pos);
void utf8_append(std::string& out, uint32_t cp);
// Number of code points in valid UTF-8.
size_t utf8_length(std::string_view s);
bool utf8_is_valid(std::string_view s);
// Invalid sequences become U+FFFD, one per maximal ill-formed subpart (the rule Python's
// errors="replace" and Rust's from_utf8_lossy share).
std::string utf8_lossy(std::string_view bytes);
// Length of the longest prefix of `bytes` that does not end inside a character that later
// bytes could still complete (an ill-formed sequence counts as complete).
size_t utf8_complete_prefix(std::string_view bytes);

bool is_white_space(uint32_t cp);      // Unicode White_Space
bool is_word_char(uint32_t cp);        // Alphabetic, M*, Nd, Pc, Join_Control
bool is_numeric_char(uint32_t cp);     // Nd, Nl, No
bool is_punctuation_char(uint32_t cp); // P*
// Python str.isspace(): what Jinja's trim and str.strip() remove.
bool is_python_space(uint32_t cp);
std::string python_strip(std::string_view s);

// GPT-2's reversible byte <-> printable-character mapping.
uint32_t byte_to_unicode(uint8_t byte);
// The byte a byte-level character stands for, or -1 for characters outside the alphabet.
int unicode_to_byte(uint32_t cp);
// Maps every byte of `text` to its byte-level character.
std::string bytes_to_byte_level(std::string_view text);
// Inverse of bytes_to_byte_level; false (and `out` untouched) when some character is not in
// the byte-level alphabet.
bool byte_level_to_bytes(std::string_view text, std::string& out);

}  // namespace tlm
