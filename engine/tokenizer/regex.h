// A PCRE2 regular expression compiled the way HF `tokenizers` compiles its Oniguruma
// patterns: UTF-8 subject, Unicode properties for \p{..}, \s, \w and case folding.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tlm {

class Regex {
 public:
  // `where` names the file and field the pattern came from, for error messages.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  const std::string& pattern() const { return pattern_; }
  // All non-overlapping matches as byte ranges [begin, end), with Oniguruma's iteration
  // rule for empty matches (skipped when they touch the end of the previous match).
  // `subject` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view subject) const;

 private:
  std::string pattern_;
  std::string where_;
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace tlm
