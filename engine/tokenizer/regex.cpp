#include "engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/common/error.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// Match data is per call so one Regex can be used from several threads at once.
struct MatchData {
  pcre2_match_data* data;
  explicit MatchData(const pcre2_code* code)
      : data(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(data); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};

// Oniguruma's \s is the White_Space property; PCRE2's (with UCP) also matches U+180E
// MONGOLIAN VOWEL SEPARATOR, which stopped being a space in Unicode 6.3. Spelling the
// property out makes both engines agree. Works inside and outside character classes.
std::string onig_compatible(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 16);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
      continue;
    }
    const char next = pattern[++i];
    if (next == 's') out += "\\p{White_Space}";
    else if (next == 'S') out += "\\P{White_Space}";
    else {
      out += '\\';
      out += next;
    }
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where)
    : pattern_(pattern), where_(where) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const std::string translated = onig_compatible(pattern);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  TLM_CHECK(code != nullptr, where, ": regex does not compile (", pcre2_message(error),
            " at offset ", offset, " after \\s is spelled \\p{White_Space}): ", pattern);
  // JIT is only a speed-up; the interpreter gives the same matches when it is unavailable.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view subject) const {
  std::vector<std::pair<size_t, size_t>> matches;
  const auto* code = static_cast<const pcre2_code*>(code_);
  MatchData md(code);
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t start = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (start <= subject.size()) {
    int rc = pcre2_match(code, text, subject.size(), start, PCRE2_NO_UTF_CHECK, md.data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    TLM_CHECK(rc >= 0, where_, ": regex match failed (", pcre2_message(rc), "): ", pattern_);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.data);
    size_t b = ov[0], e = ov[1];
    if (b == e) {
      // Step over one character so the search makes progress.
      size_t next = e;
      if (next < subject.size()) utf8_decode_at(subject, next); else next = e + 1;
      start = next;
      if (have_last && last_end == e) continue;
    } else {
      start = e;
    }
    have_last = true;
    last_end = e;
    matches.emplace_back(b, e);
  }
  return matches;
}

}  // namespace tlm
