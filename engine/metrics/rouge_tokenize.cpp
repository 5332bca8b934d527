#include "engine/metrics/rouge_tokenize.h"

#include <cstdint>
#include <utility>

#include "engine/metrics/porter_stemmer.h"
#include "engine/metrics/utf8_decode.h"

namespace tlm {

std::vector<std::string> rouge_tokenize(std::string_view text, bool use_stemmer) {
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&]() {
    if (current.empty()) return;
    tokens.push_back(std::move(current));
    current.clear();
  };
  for (size_t pos = 0; pos < text.size();) {
    uint32_t cp;
    pos += decode_utf8(text, pos, &cp);
    if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) {
      current.push_back(static_cast<char>(cp));
    } else if (cp >= 'A' && cp <= 'Z') {
      current.push_back(static_cast<char>(cp - 'A' + 'a'));
    } else if (cp == 0x212A) {
      current.push_back('k');
    } else if (cp == 0x130) {
      // Lowercases to "i" followed by U+0307 (combining dot), which ends the token.
      current.push_back('i');
      flush();
    } else {
      flush();
    }
  }
  flush();
  if (use_stemmer) {
    for (std::string& t : tokens) {
      if (t.size() > 3) t = porter_stem(t);
    }
  }
  return tokens;
}

}  // namespace tlm
