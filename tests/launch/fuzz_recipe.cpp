// libFuzzer target: `tlm adapt` / `tlm serve` YAML recipes from arbitrary bytes (seeds: the
// committed configs/*.yaml). Only tlm::Error may escape (yaml-cpp's exceptions, bad numbers and
// unknown keys must come out as errors naming the file); a recipe that loads holds finite
// numbers only.
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <cxxopts.hpp>

#include "engine/common/error.h"
#include "launch/adapt_recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("tlm-fuzz-recipe-" + std::to_string(::getpid()) + ".yaml")).string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  cxxopts::Options options("fuzz_recipe");
  tlm::add_recipe_flags(options);
  const char* argv[] = {"fuzz_recipe"};
  const cxxopts::ParseResult parsed = options.parse(1, argv);
  try {
    const tlm::AdaptRecipe recipe = tlm::load_adapt_recipe(path, parsed);
    const tlm::AdaptConfig& c = recipe.adapt;
    for (double v : {c.learning_rate, c.lora.alpha, c.lora.dropout, c.step.max_grad_norm, c.adamw.weight_decay,
                     c.generation.sampling.temperature, c.generation.sampling.top_p})
      if (!std::isfinite(v)) __builtin_trap();
    if (c.lora.rank < 1 || c.stream_batch < 1 || c.train_batch_size < 1) __builtin_trap();
  } catch (const tlm::Error&) {
  }
  return 0;
}
