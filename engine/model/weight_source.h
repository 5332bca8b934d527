// Where a model's weights come from, by their HF names ("model.layers.3.self_attn.q_proj.
// weight"), as fp32 tensors. One implementation per format: HF safetensors directories and
// GGUF files (dequantised at load, Q/K rows un-permuted). A slice reads only the part of a
// tensor a tensor-parallel rank holds, straight from the memory map.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "engine/kernels/block_weight.h"

namespace tlm {

class GgufFile;
struct ModelConfig;

struct WeightSlice {
  int dim = -1;  // -1: the whole tensor
  int64_t begin = 0;
  int64_t end = 0;
  static WeightSlice whole() { return {}; }
  static WeightSlice along(int dim, int64_t begin, int64_t end) { return {dim, begin, end}; }
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const std::string& path() const = 0;
  virtual bool has(const std::string& hf_name) const = 0;
  // Full torch shape; throws "<path>: tensor '<name>' not found (...)" when absent.
  virtual std::vector<int64_t> shape(const std::string& hf_name) const = 0;
  // A fresh, contiguous fp32 tensor (never aliasing the mapping) of the slice.
  virtual at::Tensor load(const std::string& hf_name, const WeightSlice& slice) const = 0;
  // A hash of the stored weight bytes (engine/formats/weights_fingerprint.h): what a
  // checkpoint records so that a resume refuses another base with the same config.
  virtual std::string fingerprint() const = 0;
  // The whole 2-D weight in the file's own quantised blocks, rows in HF's order, where the
  // file stores it in a format the block kernel reads (GGUF Q4_1, Q8_0); nullopt otherwise.
  virtual std::optional<BlockWeight> load_blocks(const std::string& /*hf_name*/) const { return std::nullopt; }
  // llama.cpp's per-frequency rope factors (llama3 scaling inside GGUF), when present.
  virtual std::optional<at::Tensor> rope_frequency_factors() const { return std::nullopt; }
};

std::unique_ptr<WeightSource> open_safetensors_weights(const std::string& directory);
std::unique_ptr<WeightSource> open_gguf_weights(std::shared_ptr<const GgufFile> gguf,
                                                const ModelConfig& config);

}  // namespace tlm
