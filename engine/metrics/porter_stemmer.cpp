#include "engine/metrics/porter_stemmer.h"

#include <vector>

namespace tlm {

namespace {

bool is_vowel_letter(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

bool ends_with(const std::string& w, std::string_view suffix) {
  return w.size() >= suffix.size() &&
         std::string_view(w).substr(w.size() - suffix.size()) == suffix;
}

std::string drop(const std::string& w, size_t n) { return w.substr(0, w.size() - n); }

// Consonant in Porter's sense: not a vowel letter, and 'y' only when it starts the word or
// follows a vowel. A run of y's alternates, resolved by walking back (no recursion).
bool is_consonant(const std::string& w, size_t i) {
  if (is_vowel_letter(w[i])) return false;
  if (w[i] != 'y') return true;
  bool negate = false;
  while (i > 0 && w[i] == 'y') {
    negate = !negate;
    --i;
  }
  return (!is_vowel_letter(w[i])) != negate;
}

std::vector<bool> consonant_flags(const std::string& w) {
  std::vector<bool> flags(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    if (is_vowel_letter(w[i])) {
      flags[i] = false;
    } else if (w[i] == 'y') {
      flags[i] = i == 0 ? true : !flags[i - 1];
    } else {
      flags[i] = true;
    }
  }
  return flags;
}

// m in [C](VC){m}[V]: the number of vowel-to-consonant transitions.
int measure(const std::string& stem) {
  std::vector<bool> f = consonant_flags(stem);
  int m = 0;
  for (size_t i = 1; i < f.size(); ++i) {
    if (!f[i - 1] && f[i]) ++m;
  }
  return m;
}

bool contains_vowel(const std::string& stem) {
  for (bool c : consonant_flags(stem)) {
    if (!c) return true;
  }
  return false;
}

bool ends_double_consonant(const std::string& w) {
  size_t n = w.size();
  return n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1);
}

// *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also accepts a whole
// two-letter stem of vowel + consonant.
bool ends_cvc(const std::string& w) {
  size_t n = w.size();
  if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) &&
      w[n - 1] != 'w' && w[n - 1] != 'x' && w[n - 1] != 'y') {
    return true;
  }
  return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}

enum class Cond { kNone, kM0, kM1, kM1IonST, kLogi };

struct Rule {
  std::string_view suffix;
  std::string_view replacement;
  Cond cond;
};

bool holds(Cond cond, const std::string& stem, const std::string& word) {
  switch (cond) {
    case Cond::kNone: return true;
    case Cond::kM0: return measure(stem) > 0;
    case Cond::kM1: return measure(stem) > 1;
    case Cond::kM1IonST:
      return measure(stem) > 1 && (stem.back() == 's' || stem.back() == 't');
    case Cond::kLogi: return measure(drop(word, 3)) > 0;  // the stem keeps the 'l'
  }
  return false;
}

// The first rule whose suffix matches decides: its condition holding rewrites the word,
// failing leaves the word as it is (no later rule is tried).
std::string apply_rules(const std::string& word, const Rule* rules, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    const Rule& r = rules[i];
    if (!ends_with(word, r.suffix)) continue;
    std::string stem = drop(word, r.suffix.size());
    if (!holds(r.cond, stem, word)) return word;
    return stem + std::string(r.replacement);
  }
  return word;
}

std::string step1a(const std::string& w) {
  if (ends_with(w, "ies") && w.size() == 4) return drop(w, 3) + "ie";
  static const Rule rules[] = {
      {"sses", "ss", Cond::kNone},
      {"ies", "i", Cond::kNone},
      {"ss", "ss", Cond::kNone},
      {"s", "", Cond::kNone},
  };
  return apply_rules(w, rules, sizeof(rules) / sizeof(rules[0]));
}

std::string step1b(const std::string& w) {
  if (ends_with(w, "ied")) return drop(w, 3) + (w.size() == 4 ? "ie" : "i");
  if (ends_with(w, "eed")) {
    std::string stem = drop(w, 3);
    return measure(stem) > 0 ? stem + "ee" : w;
  }
  std::string stem;
  bool removed = false;
  for (std::string_view suffix : {std::string_view("ed"), std::string_view("ing")}) {
    if (ends_with(w, suffix)) {
      stem = drop(w, suffix.size());
      if (contains_vowel(stem)) {
        removed = true;
        break;
      }
    }
  }
  if (!removed) return w;
  if (ends_with(stem, "at")) return stem + "e";
  if (ends_with(stem, "bl")) return stem + "e";
  if (ends_with(stem, "iz")) return stem + "e";
  if (ends_double_consonant(stem)) {
    char last = stem.back();
    if (last != 'l' && last != 's' && last != 'z') return drop(stem, 1);
    return stem;
  }
  if (measure(stem) == 1 && ends_cvc(stem)) return stem + "e";
  return stem;
}

std::string step1c(const std::string& w) {
  if (!ends_with(w, "y")) return w;
  std::string stem = drop(w, 1);
  if (stem.size() > 1 && is_consonant(stem, stem.size() - 1)) return stem + "i";
  return w;
}

std::string step2(const std::string& w) {
  if (ends_with(w, "alli") && measure(drop(w, 4)) > 0) return step2(drop(w, 4) + "al");
  static const Rule rules[] = {
      {"ational", "ate", Cond::kM0}, {"tional", "tion", Cond::kM0},
      {"enci", "ence", Cond::kM0},   {"anci", "ance", Cond::kM0},
      {"izer", "ize", Cond::kM0},    {"bli", "ble", Cond::kM0},
      {"alli", "al", Cond::kM0},     {"entli", "ent", Cond::kM0},
      {"eli", "e", Cond::kM0},       {"ousli", "ous", Cond::kM0},
      {"ization", "ize", Cond::kM0}, {"ation", "ate", Cond::kM0},
      {"ator", "ate", Cond::kM0},    {"alism", "al", Cond::kM0},
      {"iveness", "ive", Cond::kM0}, {"fulness", "ful", Cond::kM0},
      {"ousness", "ous", Cond::kM0}, {"aliti", "al", Cond::kM0},
      {"iviti", "ive", Cond::kM0},   {"biliti", "ble", Cond::kM0},
      {"fulli", "ful", Cond::kM0},   {"logi", "log", Cond::kLogi},
  };
  return apply_rules(w, rules, sizeof(rules) / sizeof(rules[0]));
}

std::string step3(const std::string& w) {
  static const Rule rules[] = {
      {"icate", "ic", Cond::kM0}, {"ative", "", Cond::kM0}, {"alize", "al", Cond::kM0},
      {"iciti", "ic", Cond::kM0}, {"ical", "ic", Cond::kM0}, {"ful", "", Cond::kM0},
      {"ness", "", Cond::kM0},
  };
  return apply_rules(w, rules, sizeof(rules) / sizeof(rules[0]));
}

std::string step4(const std::string& w) {
  static const Rule rules[] = {
      {"al", "", Cond::kM1},   {"ance", "", Cond::kM1},     {"ence", "", Cond::kM1},
      {"er", "", Cond::kM1},   {"ic", "", Cond::kM1},       {"able", "", Cond::kM1},
      {"ible", "", Cond::kM1}, {"ant", "", Cond::kM1},      {"ement", "", Cond::kM1},
      {"ment", "", Cond::kM1}, {"ent", "", Cond::kM1},      {"ion", "", Cond::kM1IonST},
      {"ou", "", Cond::kM1},   {"ism", "", Cond::kM1},      {"ate", "", Cond::kM1},
      {"iti", "", Cond::kM1},  {"ous", "", Cond::kM1},      {"ive", "", Cond::kM1},
      {"ize", "", Cond::kM1},
  };
  return apply_rules(w, rules, sizeof(rules) / sizeof(rules[0]));
}

// Both E rules are tried (unlike apply_rules): (m>1) E -> and (m=1 and not *o) E ->.
std::string step5a(const std::string& w) {
  if (!ends_with(w, "e")) return w;
  std::string stem = drop(w, 1);
  int m = measure(stem);
  if (m > 1) return stem;
  if (m == 1 && !ends_cvc(stem)) return stem;
  return w;
}

std::string step5b(const std::string& w) {
  if (ends_with(w, "ll") && measure(drop(w, 1)) > 1) return drop(w, 1);
  return w;
}

const char* irregular_form(const std::string& w) {
  struct Entry {
    const char* form;
    const char* stem;
  };
  static const Entry table[] = {
      {"sky", "sky"},         {"skies", "sky"},       {"dying", "die"},
      {"lying", "lie"},       {"tying", "tie"},       {"news", "news"},
      {"innings", "inning"},  {"inning", "inning"},   {"outings", "outing"},
      {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
      {"howe", "howe"},       {"proceed", "proceed"}, {"exceed", "exceed"},
      {"succeed", "succeed"},
  };
  for (const Entry& e : table) {
    if (w == e.form) return e.stem;
  }
  return nullptr;
}

}  // namespace

std::string porter_stem(std::string_view word) {
  std::string w(word);
  for (char& c : w) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (const char* irregular = irregular_form(w)) return irregular;
  if (w.size() <= 2) return w;
  w = step1a(w);
  w = step1b(w);
  w = step1c(w);
  w = step2(w);
  w = step3(w);
  w = step4(w);
  w = step5a(w);
  w = step5b(w);
  return w;
}

}  // namespace tlm
