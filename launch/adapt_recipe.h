// YAML recipes for `tlm adapt` (configs/tlm-online.yaml, ...): every setting of an
// adaptation job, with flags overriding recipe values. Unknown keys and values of the wrong
// type are errors naming the file, line and key (or the flag they came from).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "engine/learn/adapt_config.h"
#include "launch/model_options.h"
#include "launch/recipe_reader.h"

namespace tlm {

struct AdaptRecipe {
  ModelOptions model;
  AdaptConfig adapt;
  std::shared_ptr<RecipeReader> values;  // the recipe and flags: a command's own keys (`extra`)
};

// Adds the flags that override recipe keys (--lr, --threshold, --stream-batch, ...), and a
// command's own (`extra`, listed under `extra_group` in --help).
void add_recipe_flags(cxxopts::Options& options, const std::vector<RecipeFlag>& extra = {},
                      const std::string& extra_group = "");
// Reads `recipe_path` (may be empty: defaults only), then applies the flags given. `extra`:
// the keys a command adds to the schema (tlm serve's serve.*), read through `values`.
AdaptRecipe load_adapt_recipe(const std::string& recipe_path, const cxxopts::ParseResult& parsed,
                              const std::vector<RecipeFlag>& extra = {});

}  // namespace tlm
