// The range of every numeric setting, in one table keyed by its recipe key (configs/*.yaml).
// RecipeReader::get checks recipe values and the flags that override them against it; the
// commands without a recipe (generate, score, eval) read their numeric flags through
// bounded_flag, which checks the same entries. A value outside its range is an error naming
// the file and line, or the flag, it came from.
#pragma once

#include <limits>
#include <string>

#include <cxxopts.hpp>

#include "engine/common/error.h"

namespace tlm {

struct Bounds {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;  // lo itself is refused
  bool hi_open = false;
  const char* meaning = "";  // why the range is what it is (printed with the error)

  bool contains(double v) const { return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi); }
};

// The bounds of recipe key `key`, or nullptr when it has none beyond its type (seeds).
const Bounds* bounds_of(const std::string& key);

// "must be in [0, 1)" and the meaning; `got` is the value as written.
std::string bounds_message(const std::string& key, const Bounds& b, const std::string& got);

// Numeric flag --`flag` of a command without a recipe, checked against the bounds of `key`.
template <typename T>
T bounded_flag(const cxxopts::ParseResult& parsed, const std::string& flag, const std::string& key) {
  const T value = parsed[flag].as<T>();
  if (const Bounds* b = bounds_of(key))
    TLM_CHECK(b->contains(static_cast<double>(value)), "command line --", flag, ": ",
              bounds_message(key, *b, std::to_string(value)));
  return value;
}

}  // namespace tlm
