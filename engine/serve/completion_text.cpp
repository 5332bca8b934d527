#include "engine/serve/completion_text.h"

#include <algorithm>

#include "engine/tokenizer/tokenizer.h"

namespace tlm {
namespace {

// Bytes at the end of `s` that start a UTF-8 sequence the text does not finish yet.
size_t incomplete_utf8_tail(const std::string& s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

// The longest suffix of `s` that is a proper prefix of some stop sequence.
size_t stop_prefix_tail(const std::string& s, const std::vector<std::string>& stop) {
  size_t hold = 0;
  for (const std::string& x : stop)
    for (size_t k = std::min(x.size() - 1, s.size()); k > hold; --k)
      if (s.compare(s.size() - k, k, x, 0, k) == 0) {
        hold = k;
        break;
      }
  return hold;
}

}  // namespace

CompletionText::CompletionText(const Tokenizer& tokenizer, std::vector<std::string> stop)
    : tokenizer_(tokenizer), stop_(std::move(stop)) {}

std::string CompletionText::add(const std::vector<int32_t>& tokens) {
  if (tokens.empty() || stop_hit_) return "";
  ids_.insert(ids_.end(), tokens.begin(), tokens.end());
  text_ = tokenizer_.decode(ids_, /*skip_special=*/true);
  size_t cut = std::string::npos;
  for (const std::string& x : stop_) {
    // Only where a new token could have completed it: from just before the released text ends.
    const size_t from = released_.size() >= x.size() ? released_.size() - x.size() + 1 : 0;
    const size_t at = text_.find(x, from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    text_.resize(std::max(cut, released_.size()));
    stop_hit_ = true;
    return release(true);
  }
  return release(false);
}

std::string CompletionText::finish() { return release(true); }

std::string CompletionText::release(bool final) {
  size_t end = text_.size();
  if (!final) end -= std::max(incomplete_utf8_tail(text_), stop_prefix_tail(text_, stop_));
  // What was released stays released, even if decoding more tokens rewrote a byte of it.
  if (end <= released_.size()) return "";
  std::string out = text_.substr(released_.size(), end - released_.size());
  released_ += out;
  return out;
}

}  // namespace tlm
