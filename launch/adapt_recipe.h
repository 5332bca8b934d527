// YAML recipes for `tlm adapt` (configs/tlm-online.yaml, ...): every setting of an
// adaptation job, with flags overriding recipe values. Unknown keys and values of the wrong
// type are errors naming the file, line and key (or the flag they came from).
#pragma once

#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "engine/learn/adapt_config.h"
#include "launch/model_options.h"

namespace tlm {

struct AdaptRecipe {
  ModelOptions model;
  AdaptConfig adapt;
};

// Adds the flags that override recipe keys (--lr, --threshold, --stream-batch, ...).
void add_recipe_flags(cxxopts::Options& options);
// Reads `recipe_path` (may be empty: defaults only), then applies the flags given.
AdaptRecipe load_adapt_recipe(const std::string& recipe_path, const cxxopts::ParseResult& parsed);

}  // namespace tlm
