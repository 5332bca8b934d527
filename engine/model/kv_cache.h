// Keys and values of every layer for incremental decoding, preallocated to the longest
// sequence the generation can reach. Rows of a batch may be left-padded: `key_mask` says
// which cache slots hold real tokens and `next_position` is each row's next rotary position.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

namespace tlm {

struct KvCache {
  std::vector<at::Tensor> keys;    // per layer [B, kv_heads/tp, capacity, head_dim]
  std::vector<at::Tensor> values;  // per layer [B, kv_heads/tp, capacity, head_dim]
  at::Tensor key_mask;             // [B, capacity] bool
  at::Tensor next_position;        // [B] int64
  int64_t length = 0;              // slots filled so far (same for every row)
  int64_t capacity() const { return key_mask.size(1); }
  int64_t batch() const { return key_mask.size(0); }
  // Keeps only the rows `rows` (int64 indices on the cache's device, in the new order): a
  // generation drops its finished rows so that later steps compute only the running ones.
  void keep_rows(const at::Tensor& rows);
};

// The rows of `a` followed by the rows of `b` in one cache of `capacity` slots, each cache's
// filled slots right-aligned at max(a.length, b.length) with the slots before them masked
// off: a request prefilled alone joins a batch that is already decoding (continuous
// batching). Rotary positions travel with the rows, so every row continues exactly as it
// would alone. Both caches must come from the same model.
KvCache concat_caches(const KvCache& a, const KvCache& b, int64_t capacity);

}  // namespace tlm
