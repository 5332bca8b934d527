#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

Utf8StreamDecoder::Utf8StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer),
      skip_special_(skip_special),
      strip_left_(tokenizer.decode_strips_leading_spaces()) {}

namespace {

// Drops up to `strip_left` leading spaces from the first text of the stream.
std::string strip_start(std::string text, int& strip_left) {
  size_t cut = 0;
  while (strip_left > 0 && cut < text.size()) {
    if (text[cut] != ' ') {
      strip_left = 0;
      break;
    }
    ++cut;
    --strip_left;
  }
  if (!text.empty()) strip_left = 0;
  return text.substr(cut);
}

}  // namespace

std::string Utf8StreamDecoder::push(int32_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.token_bytes(id);
  const size_t n = utf8_complete_prefix(pending_);
  if (n == 0) return {};
  std::string text = utf8_lossy(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return strip_start(std::move(text), strip_left_);
}

std::string Utf8StreamDecoder::flush() {
  std::string text = utf8_lossy(pending_);
  pending_.clear();
  return strip_start(std::move(text), strip_left_);
}

}  // namespace tlm
