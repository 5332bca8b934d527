// Sequences of different lengths packed into one [B, T] batch with an attention mask, built
// on the host and moved to the model's device in one copy each.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace tlm {

struct TokenBatch {
  at::Tensor ids;       // [B, T] int64
  at::Tensor mask;      // [B, T] int64, 1 = token
  bool padded = false;  // some row is shorter than T (known on the host: no device sync)
  // What the model takes as attention_mask: the mask when padded, else undefined (the
  // causal fast path, no mask tensors built).
  at::Tensor attention_mask() const { return padded ? mask : at::Tensor(); }
};

// Right padding (scoring and training: positions start at 0 on every row either way).
TokenBatch right_padded_batch(const std::vector<std::vector<int32_t>>& sequences, int32_t pad_id,
                              const c10::Device& device = c10::Device(c10::kCPU));

// Left padding (generation: every row's last prompt token lands in the last column).
TokenBatch left_padded_batch(const std::vector<std::vector<int32_t>>& sequences, int32_t pad_id,
                             const c10::Device& device = c10::Device(c10::kCPU));

}  // namespace tlm
