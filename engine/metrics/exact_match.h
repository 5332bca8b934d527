// GSM8K exact match as the official TLM evaluation computes it (Fhujinwu/TLM,
// scripts/eval/eval_utils.py, extract_gsm8k_answer_number; eval_accuracy.py compares the
// result with the label as a string).
//
// The answer of a text is found by this rule, with Python 3.11 `re` semantics on str
// (Unicode \s and \d; implemented with PCRE2 in UTF mode, Unicode 14 like Python 3.11):
//   1. split the text on runs of whitespace (Python's str.isspace() set);
//   2. keep the tokens holding a decimal digit (\d: any Unicode Nd digit);
//   3. from each, delete every character that is not a digit, ',', '.' or '-';
//   4. take the LAST such token only (no fallback to earlier ones), remove its commas and
//      strip '.' from both ends;
//   5. it must hold at most one '.' and one '-' and match ^-?\d*\.?\d*$, else no answer
//      (e.g. a final "5-year-old" gives "5--": no answer, even if a number came before);
//   6. its value as a float (non-ASCII digits by their decimal value), rounded to an
//      integer half-to-even as Python's round(); an overflow to infinity gives no answer.
// The answer is written as Python's str(int): "42", "-3", "0" (never "-0").
//
// GSM8K references end with "#### <number>": the reference answer is the same rule applied
// to the text after the last "####" (to the whole reference when it has none, as in
// AdaptEval's gsm8k, where the label is the bare number). Unlike the official string
// comparison, a reference written "1,000" or "#### 72" also matches; for integer labels
// the two agree. A non-integer reference is rounded like the prediction.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tlm {

// The answer of a prediction (steps 1-6 above), or nullopt when it has none.
std::optional<std::string> extract_gsm8k_answer(std::string_view text);

// The answer of a reference: extract_gsm8k_answer of the part after the last "####".
std::optional<std::string> gsm8k_reference_answer(std::string_view reference);

// True for references exact match applies to: a GSM8K solution ending in "#### answer", or a
// bare number ("72", "-3.5", "1,000"). Free-text references are scored with ROUGE instead.
bool is_numeric_reference(std::string_view reference);

// True when both answers exist and are equal.
bool gsm8k_exact_match(std::string_view prediction, std::string_view reference);

}  // namespace tlm
