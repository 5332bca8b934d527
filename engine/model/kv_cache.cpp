#include "engine/model/kv_cache.h"

#include <ATen/ATen.h>

namespace tlm {

void KvCache::keep_rows(const at::Tensor& rows) {
  for (at::Tensor& k : keys) k = k.index_select(0, rows);
  for (at::Tensor& v : values) v = v.index_select(0, rows);
  key_mask = key_mask.index_select(0, rows);
  next_position = next_position.index_select(0, rows);
}

}  // namespace tlm
