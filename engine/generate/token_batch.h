// Sequences of different lengths packed into one [B, T] batch with an attention mask.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tlm {

struct TokenBatch {
  at::Tensor ids;   // [B, T] int64
  at::Tensor mask;  // [B, T] int64, 1 = token
};

// Right padding (scoring and training: positions start at 0 on every row either way).
TokenBatch right_padded_batch(const std::vector<std::vector<int32_t>>& sequences,
                              int32_t pad_id);

}  // namespace tlm
