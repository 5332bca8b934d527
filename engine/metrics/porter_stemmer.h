// The Porter stemmer as rouge_score uses it: nltk.stem.porter.PorterStemmer() in its
// default NLTK_EXTENSIONS mode (nltk 3.10), called as stem(word) with to_lowercase=True.
// NLTK_EXTENSIONS differs from the 1980 paper and from Martin Porter's own versions in:
// a table of irregular forms (sky/skies, dying, lying, tying, news, innings, outings,
// cannings, howe, proceed, exceed, succeed); words of 1-2 letters are returned unchanged;
// step 1a "ies" -> "ie" for 4-letter words; step 1b "ied" -> "ie"/"i"; step 1c y -> i only
// after a consonant that is not the first letter; *o also true for 2-letter VC stems;
// step 2 applies "alli" -> "al" first and re-runs, uses "bli" (not "abli") -> "ble", and
// adds "fulli" -> "ful" and "logi" -> "log" (measured on the stem plus "l").
#pragma once

#include <string>
#include <string_view>

namespace tlm {

// Lowercases ASCII letters, then stems. Digits and other bytes are kept and count as
// consonants, as in nltk (rouge_score only passes [a-z0-9] tokens longer than 3 bytes).
std::string porter_stem(std::string_view word);

}  // namespace tlm
