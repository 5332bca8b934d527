// rouge_score's DefaultTokenizer (rouge_score 0.1.2, tokenize.py): lowercase, every
// character outside [a-z0-9] becomes a separator, tokens are the remaining runs, and with
// the stemmer tokens longer than 3 characters are Porter-stemmed (porter_stemmer.h).
//
// Text is UTF-8 and handled per character as Python's str regex does: a multibyte
// character is one separator. Python's str.lower() turns exactly two non-ASCII characters
// into ASCII letters (Unicode 14): U+0130 (capital I with dot) -> "i" + U+0307, and
// U+212A (Kelvin sign) -> "k"; both are mapped the same way here. Invalid UTF-8 bytes
// (which a Python str cannot hold) are separators.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tlm {

std::vector<std::string> rouge_tokenize(std::string_view text, bool use_stemmer);

}  // namespace tlm
