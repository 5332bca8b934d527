// Rotary position embeddings in HF's rotate-half layout, with the rope_scaling variants
// tlm supports (default, linear, llama3) and llama.cpp's per-frequency factors from GGUF.
#pragma once

#include <optional>
#include <utility>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "engine/model/model_config.h"

namespace tlm {

class RotaryEmbedding {
 public:
  // inv_freq is computed on the host (transformers' arithmetic) and kept on `device`.
  RotaryEmbedding(const ModelConfig& config, std::optional<at::Tensor> frequency_factors,
                  c10::Device device = c10::Device(c10::kCPU));
  // positions [B, T] int64 -> (cos, sin), each [B, T, head_dim] in `dtype`.
  std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& positions,
                                            at::ScalarType dtype) const;
  const at::Tensor& inv_freq() const { return inv_freq_; }

 private:
  at::Tensor inv_freq_;  // [head_dim / 2] fp32
};

// x [B, heads, T, D] with cos/sin [B, T, D]: x * cos + rotate_half(x) * sin.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace tlm
