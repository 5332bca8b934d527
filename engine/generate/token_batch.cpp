#include "engine/generate/token_batch.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace tlm {
namespace {

TokenBatch padded_batch(const std::vector<std::vector<int32_t>>& sequences, int32_t pad_id,
                        const c10::Device& device, bool left) {
  size_t longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, s.size());
  const int64_t B = static_cast<int64_t>(sequences.size());
  const int64_t T = static_cast<int64_t>(longest);
  at::Tensor ids = at::full({B, T}, pad_id, at::kLong);
  at::Tensor mask = at::zeros({B, T}, at::kLong);
  auto ids_acc = ids.accessor<int64_t, 2>();
  auto mask_acc = mask.accessor<int64_t, 2>();
  bool padded = false;
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = sequences[static_cast<size_t>(b)];
    const int64_t offset = left ? T - static_cast<int64_t>(s.size()) : 0;
    padded |= s.size() != longest;
    for (size_t t = 0; t < s.size(); ++t) {
      ids_acc[b][offset + static_cast<int64_t>(t)] = s[t];
      mask_acc[b][offset + static_cast<int64_t>(t)] = 1;
    }
  }
  return {ids.to(device), mask.to(device), padded};
}

}  // namespace

TokenBatch right_padded_batch(const std::vector<std::vector<int32_t>>& sequences, int32_t pad_id,
                              const c10::Device& device) {
  return padded_batch(sequences, pad_id, device, /*left=*/false);
}

TokenBatch left_padded_batch(const std::vector<std::vector<int32_t>>& sequences, int32_t pad_id,
                             const c10::Device& device) {
  return padded_batch(sequences, pad_id, device, /*left=*/true);
}

}  // namespace tlm
