#include "engine/generate/token_batch.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace tlm {

TokenBatch right_padded_batch(const std::vector<std::vector<int32_t>>& sequences,
                              int32_t pad_id) {
  size_t longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, s.size());
  const int64_t B = static_cast<int64_t>(sequences.size());
  const int64_t T = static_cast<int64_t>(longest);
  TokenBatch batch{at::full({B, T}, pad_id, at::kLong), at::zeros({B, T}, at::kLong)};
  auto ids = batch.ids.accessor<int64_t, 2>();
  auto mask = batch.mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = sequences[static_cast<size_t>(b)];
    for (size_t t = 0; t < s.size(); ++t) {
      ids[b][static_cast<int64_t>(t)] = s[t];
      mask[b][static_cast<int64_t>(t)] = 1;
    }
  }
  return batch;
}

}  // namespace tlm
