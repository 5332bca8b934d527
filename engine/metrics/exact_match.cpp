#include "engine/metrics/exact_match.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cstdlib>
#include <pcre2.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "engine/common/error.h"
#include "engine/metrics/utf8_decode.h"

namespace tlm {

namespace {

// Python's \s for str (str.isspace(), Unicode 14), written out because PCRE2's \s in UCP
// mode leaves out the information separators U+001C..U+001F that Python includes.
constexpr const char* kWhitespaceRun =
    "[\\t\\n\\x0B\\f\\r\\x1C-\\x1F \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}"
    "\\x{2029}\\x{202F}\\x{205F}\\x{3000}]+";
constexpr const char* kDigit = "\\p{Nd}";
constexpr const char* kNotNumberChar = "[^\\p{Nd},.\\-]";
constexpr const char* kNumberShape = "^-?\\p{Nd}*\\.?\\p{Nd}*\\z";

// The code point of digit zero of every Nd block (each block is 0..9 in order, a Unicode
// stability guarantee), as Python 3.11's unicodedata lists them.
constexpr uint32_t kDigitZeros[] = {
    0x30,    0x660,   0x6F0,   0x7C0,   0x966,   0x9E6,   0xA66,   0xAE6,   0xB66,
    0xBE6,   0xC66,   0xCE6,   0xD66,   0xDE6,   0xE50,   0xED0,   0xF20,   0x1040,
    0x1090,  0x17E0,  0x1810,  0x1946,  0x19D0,  0x1A80,  0x1A90,  0x1B50,  0x1BB0,
    0x1C40,  0x1C50,  0xA620,  0xA8D0,  0xA900,  0xA9D0,  0xA9F0,  0xAA50,  0xABF0,
    0xFF10,  0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450,
    0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0,
    0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140,
    0x1E2F0, 0x1E950, 0x1FBF0,
};

int digit_value(uint32_t cp) {
  const uint32_t* end = kDigitZeros + sizeof(kDigitZeros) / sizeof(kDigitZeros[0]);
  const uint32_t* it = std::upper_bound(kDigitZeros, end, cp);
  if (it == kDigitZeros) return -1;
  uint32_t offset = cp - *(it - 1);
  return offset < 10 ? static_cast<int>(offset) : -1;
}

// One compiled PCRE2 pattern in UTF + UCP mode. Compiled once (static), matched with a
// fresh match block per call, so concurrent use is safe.
class Pattern {
 public:
  explicit Pattern(const char* pattern) {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      TLM_FAIL("exact_match: cannot compile pattern ", pattern, " at ", err_offset, ": ",
               reinterpret_cast<const char*>(msg));
    }
  }
  ~Pattern() { pcre2_code_free(code_); }
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;

  // Start and end of the first match at or after `from`; false when there is none.
  bool find(const std::string& text, size_t from, size_t* begin, size_t* end) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), from,
                         PCRE2_NO_UTF_CHECK, md, nullptr);
    bool found = rc >= 0;
    if (found) {
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      *begin = ov[0];
      *end = ov[1];
    }
    pcre2_match_data_free(md);
    TLM_CHECK(found || rc == PCRE2_ERROR_NOMATCH, "exact_match: PCRE2 match error ", rc);
    return found;
  }

  bool search(const std::string& text) const {
    size_t b, e;
    return find(text, 0, &b, &e);
  }

  std::vector<std::string> split(const std::string& text) const {
    std::vector<std::string> pieces;
    size_t pos = 0, b, e;
    while (pos <= text.size() && find(text, pos, &b, &e)) {
      pieces.push_back(text.substr(pos, b - pos));
      pos = e;
    }
    pieces.push_back(text.substr(pos));
    return pieces;
  }

  std::string remove_all(const std::string& text) const {
    std::string out;
    size_t pos = 0, b, e;
    while (pos < text.size() && find(text, pos, &b, &e)) {
      out.append(text, pos, b - pos);
      pos = e;
    }
    out.append(text, pos, std::string::npos);
    return out;
  }

 private:
  pcre2_code* code_ = nullptr;
};

const Pattern& whitespace_run() {
  static const Pattern p(kWhitespaceRun);
  return p;
}
const Pattern& digit() {
  static const Pattern p(kDigit);
  return p;
}
const Pattern& not_number_char() {
  static const Pattern p(kNotNumberChar);
  return p;
}
const Pattern& number_shape() {
  static const Pattern p(kNumberShape);
  return p;
}

// Python's round(): to the nearest integer, ties to even; independent of the FP mode.
double round_half_even(double x) {
  double fl = std::floor(x);
  double frac = x - fl;  // exact for every finite double
  if (frac < 0.5) return fl;
  if (frac > 0.5) return fl + 1.0;
  return std::fmod(fl, 2.0) == 0.0 ? fl : fl + 1.0;
}

// Python's str(int(v)) for an integral double.
std::string integer_text(double v) {
  if (v == 0.0) return "0";
  char buf[400];
  std::snprintf(buf, sizeof(buf), "%.0f", v);  // exact for integral doubles (glibc)
  return buf;
}

// The candidate (digits, ',', '.', '-' only) as its rounded value, or nullopt.
std::optional<std::string> number_answer(std::string candidate) {
  candidate.erase(std::remove(candidate.begin(), candidate.end(), ','), candidate.end());
  size_t first = candidate.find_first_not_of('.');
  if (first == std::string::npos) return std::nullopt;
  size_t last = candidate.find_last_not_of('.');
  candidate = candidate.substr(first, last - first + 1);
  if (std::count(candidate.begin(), candidate.end(), '.') > 1 ||
      std::count(candidate.begin(), candidate.end(), '-') > 1 || !number_shape().search(candidate)) {
    return std::nullopt;
  }
  // Python's float() reads any Nd digit by its value; from_chars wants ASCII.
  std::string ascii;
  bool nonzero_integer_part = false, seen_point = false;
  for (size_t pos = 0; pos < candidate.size();) {
    uint32_t cp;
    pos += decode_utf8(candidate, pos, &cp);
    char c;
    if (cp == '-' || cp == '.') {
      c = static_cast<char>(cp);
      if (c == '.') seen_point = true;
    } else {
      int d = digit_value(cp);
      if (d < 0) return std::nullopt;
      c = static_cast<char>('0' + d);
      if (!seen_point && d != 0) nonzero_integer_part = true;
    }
    ascii.push_back(c);
  }
  double value = 0.0;
  auto [ptr, ec] = std::from_chars(ascii.data(), ascii.data() + ascii.size(), value);
  if (ec == std::errc::result_out_of_range) {
    // Python's float() gives inf (round() then raises: no answer) or underflows to 0.
    if (nonzero_integer_part) return std::nullopt;
    value = 0.0;
  } else if (ec != std::errc() || ptr != ascii.data() + ascii.size()) {
    return std::nullopt;
  }
  if (!std::isfinite(value)) return std::nullopt;
  return integer_text(round_half_even(value));
}

}  // namespace

std::optional<std::string> extract_gsm8k_answer(std::string_view text) {
  std::string clean = sanitize_utf8(text);
  std::optional<std::string> last;
  for (const std::string& token : whitespace_run().split(clean)) {
    if (digit().search(token)) last = token;
  }
  if (!last) return std::nullopt;
  return number_answer(not_number_char().remove_all(*last));
}

std::optional<std::string> gsm8k_reference_answer(std::string_view reference) {
  size_t marker = reference.rfind("####");
  if (marker != std::string_view::npos) reference = reference.substr(marker + 4);
  return extract_gsm8k_answer(reference);
}

bool gsm8k_exact_match(std::string_view prediction, std::string_view reference) {
  std::optional<std::string> ref = gsm8k_reference_answer(reference);
  std::optional<std::string> pred = extract_gsm8k_answer(prediction);
  return ref && pred && *ref == *pred;
}

bool is_numeric_reference(std::string_view reference) {
  if (reference.find("####") != std::string_view::npos) return true;
  std::string text;
  for (char c : reference)
    if (c != ',') text.push_back(c);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return false;
  const size_t last = text.find_last_not_of(" \t\r\n");
  text = text.substr(first, last - first + 1);
  char* end = nullptr;
  std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

}  // namespace tlm
