// Hand-computed ROUGE-L / ROUGE-Lsum cases, tokenizer and stemmer spot checks, and GSM8K
// answer extraction (the expected answers follow the official TLM rule, see exact_match.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/metrics/exact_match.h"
#include "engine/metrics/porter_stemmer.h"
#include "engine/metrics/rouge.h"
#include "engine/metrics/rouge_tokenize.h"

namespace tlm {
namespace {

void expect_score(const RougeScore& s, double p, double r, double f) {
  EXPECT_DOUBLE_EQ(s.precision, p);
  EXPECT_DOUBLE_EQ(s.recall, r);
  EXPECT_DOUBLE_EQ(s.fmeasure, f);
}

using Tokens = std::vector<std::string>;

TEST(RougeTokenize, LowercasesAndSplitsOnNonAlnum) {
  EXPECT_EQ(rouge_tokenize("Hello, World! It's 2024...", false),
            (Tokens{"hello", "world", "it", "s", "2024"}));
  EXPECT_EQ(rouge_tokenize("", false), Tokens{});
  EXPECT_EQ(rouge_tokenize(" \n\t!!! ", false), Tokens{});
}

TEST(RougeTokenize, NonAsciiCharactersAreSeparators) {
  // Each multibyte character is one separator, as Python's regex on str sees it.
  EXPECT_EQ(rouge_tokenize("caf\xC3\xA9 au lait", false), (Tokens{"caf", "au", "lait"}));
  EXPECT_EQ(rouge_tokenize("a\xE4\xB8\xAD" "b", false), (Tokens{"a", "b"}));
  EXPECT_EQ(rouge_tokenize("x\xF0\x9F\x98\x80y", false), (Tokens{"x", "y"}));
  // Invalid bytes separate too.
  EXPECT_EQ(rouge_tokenize("ab\xFF" "cd", false), (Tokens{"ab", "cd"}));
  // U+0130 lowercases to "i" + combining dot; U+212A (Kelvin sign) to "k".
  EXPECT_EQ(rouge_tokenize("\xC4\xB0stanbul", false), (Tokens{"i", "stanbul"}));
  EXPECT_EQ(rouge_tokenize("\xE2\x84\xAA" "elvin", false), (Tokens{"kelvin"}));
}

TEST(RougeTokenize, StemsOnlyTokensLongerThanThree) {
  EXPECT_EQ(rouge_tokenize("Running dogs ran", true), (Tokens{"run", "dog", "ran"}));
  // "ties" (4 letters) is stemmed, "tie" and "ies" are not.
  EXPECT_EQ(rouge_tokenize("ties tie ies", true), (Tokens{"tie", "tie", "ies"}));
}

TEST(PorterStemmer, NltkExtensionsMode) {
  struct Case {
    const char* word;
    const char* stem;
  };
  const Case cases[] = {
      {"caresses", "caress"}, {"ponies", "poni"},    {"ties", "tie"},
      {"sky", "sky"},         {"skies", "sky"},      {"running", "run"},
      {"happiness", "happi"}, {"generalization", "gener"},
      {"relational", "relat"}, {"conditional", "condit"}, {"dying", "die"},
      {"hopping", "hop"},     {"agreed", "agre"},    {"feed", "feed"},
      {"controll", "control"}, {"roll", "roll"},     {"enjoy", "enjoy"},
      {"happy", "happi"},     {"flies", "fli"},      {"dies", "die"},
      {"spied", "spi"},       {"died", "die"},       {"is", "is"},
      {"Running", "run"},
  };
  for (const Case& c : cases) EXPECT_EQ(porter_stem(c.word), c.stem) << c.word;
}

TEST(RougeL, HandComputed) {
  // LCS "the cat on the mat" = 5; P = 5/5, R = 5/6, F = 10/11.
  expect_score(rouge_l("the cat sat on the mat", "the cat on the mat"), 1.0, 5.0 / 6.0,
               10.0 / 11.0);
  // LCS of a b c d / b a d c = 2.
  expect_score(rouge_l("a b c d", "b a d c"), 0.5, 0.5, 0.5);
  // Case and punctuation do not matter.
  expect_score(rouge_l("Hello, World!", "hello world"), 1.0, 1.0, 1.0);
  // The stemmer makes running/run and dogs/dog match.
  expect_score(rouge_l("running dogs", "run dog", true), 1.0, 1.0, 1.0);
  expect_score(rouge_l("running dogs", "run dog", false), 0.0, 0.0, 0.0);
  // Newlines are ordinary separators for plain ROUGE-L: LCS(a b c d, c d a b) = 2.
  expect_score(rouge_l("a b\nc d", "c d\na b"), 0.5, 0.5, 0.5);
}

TEST(RougeL, EmptyCases) {
  expect_score(rouge_l("", ""), 0, 0, 0);
  expect_score(rouge_l("", "x"), 0, 0, 0);
  expect_score(rouge_l("x", ""), 0, 0, 0);
  expect_score(rouge_l("!!!", "!!!"), 0, 0, 0);  // no tokens on either side
  expect_score(rouge_l("x", "y"), 0, 0, 0);
}

TEST(RougeLsum, HandComputed) {
  // r1 = a b c, r2 = d e; c1 = a c, c2 = d x e. Union LCS: {a, c} and {d, e}: 4 hits.
  expect_score(rouge_lsum("a b c\nd e", "a c\nd x e"), 0.8, 0.8, 0.8);
  // Sentence order does not matter at summary level (plain ROUGE-L gives 0.5 here).
  expect_score(rouge_lsum("a b\nc d", "c d\na b"), 1.0, 1.0, 1.0);
  // Union of two LCS for one reference sentence: a b c d vs "a b" and "c d".
  expect_score(rouge_lsum("a b c d", "a b\nc d"), 1.0, 1.0, 1.0);
  // No double counting: the prediction's single "a" is matched once.
  expect_score(rouge_lsum("a a", "a"), 1.0, 0.5, 2.0 / 3.0);
  // The second reference sentence finds its tokens already used up.
  expect_score(rouge_lsum("a b\na b", "a b"), 1.0, 0.5, 2.0 / 3.0);
  // Empty lines are dropped; "\r" is a separator, not a sentence break.
  expect_score(rouge_lsum("a b\n\n\nc", "a\r\nb c"), 1.0, 1.0, 1.0);
}

TEST(RougeLsum, EmptyCases) {
  expect_score(rouge_lsum("", ""), 0, 0, 0);
  expect_score(rouge_lsum("\n\n", "x"), 0, 0, 0);
  expect_score(rouge_lsum("x", "\n"), 0, 0, 0);
  expect_score(rouge_lsum("...\n!!!", "x"), 0, 0, 0);  // sentences, but no tokens
}

TEST(Rouge, CorpusMean) {
  EXPECT_DOUBLE_EQ(mean_fmeasure({}), 0.0);
  RougeScore a, b;
  a.fmeasure = 1.0;
  b.fmeasure = 0.5;
  EXPECT_DOUBLE_EQ(mean_fmeasure({a, b}), 0.75);
}

std::string answer(std::string_view text) {
  std::optional<std::string> a = extract_gsm8k_answer(text);
  return a ? *a : std::string("<none>");
}

TEST(Gsm8k, ExtractsTheLastNumber) {
  EXPECT_EQ(answer("The answer is 42."), "42");
  EXPECT_EQ(answer("First 7, then 12 apples"), "12");
  EXPECT_EQ(answer("Total: 1,234 apples"), "1234");  // commas removed
  EXPECT_EQ(answer("It is -5 degrees"), "-5");       // negative
  EXPECT_EQ(answer("(42)"), "42");
  EXPECT_EQ(answer("42%"), "42");
  EXPECT_EQ(answer("so x=7"), "7");
  EXPECT_EQ(answer("#### 72"), "72");
  EXPECT_EQ(answer("$1,000.50."), "1000");  // 1000.5 rounds half to even
}

TEST(Gsm8k, RoundsLikePython) {
  EXPECT_EQ(answer("3.7"), "4");
  EXPECT_EQ(answer("2.5"), "2");
  EXPECT_EQ(answer("3.5"), "4");
  EXPECT_EQ(answer("-2.5"), "-2");
  EXPECT_EQ(answer("0.4"), "0");
  EXPECT_EQ(answer("-0.2"), "0");  // never "-0"
  EXPECT_EQ(answer(".5"), "5");    // '.' is stripped from both ends first
  EXPECT_EQ(answer("-.5"), "0");
  EXPECT_EQ(answer("..5.."), "5");
  EXPECT_EQ(answer("1e5"), "15");  // letters are deleted, not parsed
  EXPECT_EQ(answer(std::string("0.") + std::string(400, '0') + "1"), "0");  // underflow
}

TEST(Gsm8k, NoAnswer) {
  EXPECT_EQ(answer("no idea"), "<none>");
  EXPECT_EQ(answer(""), "<none>");
  EXPECT_EQ(answer("1.2.3"), "<none>");
  // Only the last number-like token counts, and it must be well formed.
  EXPECT_EQ(answer("The answer is 42. He is 5-year-old"), "<none>");
  EXPECT_EQ(answer("answer 42 then 5-6"), "<none>");
  EXPECT_EQ(answer(std::string(400, '1')), "<none>");  // float overflow to inf
}

TEST(Gsm8k, UnicodeDigitsAndWhitespace) {
  // Arabic-Indic and mathematical bold digits are \d for Python and read by float().
  EXPECT_EQ(answer("\xD8\xA7\xD9\x84\xD8\xAC\xD9\x88\xD8\xA7\xD8\xA8 \xD9\xA4\xD9\xA2"), "42");
  EXPECT_EQ(answer("\xF0\x9D\x9F\x92\xF0\x9D\x9F\x90"), "42");
  // U+2003 (em space) splits tokens; U+200B (zero width space) does not.
  EXPECT_EQ(answer("5\xE2\x80\x83-3"), "-3");
  EXPECT_EQ(answer("5\xE2\x80\x8B-3"), "<none>");
  // U+001C is whitespace for Python's str.split and re.
  EXPECT_EQ(answer("42\x1C-1"), "-1");
}

TEST(Gsm8k, References) {
  const char* gsm8k_ref =
      "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
      "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72";
  EXPECT_EQ(gsm8k_reference_answer(gsm8k_ref).value_or("<none>"), "72");
  EXPECT_EQ(gsm8k_reference_answer("#### 1,000").value_or("<none>"), "1000");
  EXPECT_EQ(gsm8k_reference_answer("375").value_or("<none>"), "375");  // AdaptEval label
  EXPECT_EQ(gsm8k_reference_answer("#### -8").value_or("<none>"), "-8");
  EXPECT_FALSE(gsm8k_reference_answer("####").has_value());

  EXPECT_TRUE(gsm8k_exact_match("So she sold 72 clips.", gsm8k_ref));
  EXPECT_TRUE(gsm8k_exact_match("The total is 72.0", "#### 72"));
  EXPECT_TRUE(gsm8k_exact_match("about 71.6", "#### 72"));  // compared after rounding
  EXPECT_TRUE(gsm8k_exact_match("1,000 dollars", "1000"));
  EXPECT_FALSE(gsm8k_exact_match("72 apples and 3 pears", "#### 72"));  // last number: 3
  EXPECT_FALSE(gsm8k_exact_match("no number", "#### 72"));
  EXPECT_FALSE(gsm8k_exact_match("72", "no number here"));
}

}  // namespace
}  // namespace tlm
