#include "engine/model/kv_cache.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "engine/common/error.h"

namespace tlm {

void KvCache::keep_rows(const at::Tensor& rows) {
  for (at::Tensor& k : keys) k = k.index_select(0, rows);
  for (at::Tensor& v : values) v = v.index_select(0, rows);
  key_mask = key_mask.index_select(0, rows);
  next_position = next_position.index_select(0, rows);
}

namespace {

// `src`'s first `length` slots (dimension `dim`) written to `dst` ending at slot `end`.
void place(at::Tensor dst, const at::Tensor& src, int64_t dim, int64_t length, int64_t end) {
  dst.narrow(dim, end - length, length).copy_(src.narrow(dim, 0, length));
}

}  // namespace

KvCache concat_caches(const KvCache& a, const KvCache& b, int64_t capacity) {
  TLM_CHECK(a.keys.size() == b.keys.size(), "concat_caches: caches of ", a.keys.size(), " and ", b.keys.size(),
            " layers");
  const int64_t length = std::max(a.length, b.length);
  TLM_CHECK(capacity >= length, "concat_caches: capacity ", capacity, " below the filled length ", length);
  const int64_t ba = a.batch(), bb = b.batch();
  KvCache out;
  out.length = length;
  auto joined = [&](const at::Tensor& x, const at::Tensor& y, int64_t dim) {
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = ba + bb;
    shape[static_cast<size_t>(dim)] = capacity;
    at::Tensor t = at::zeros(shape, x.options());
    place(t.narrow(0, 0, ba), x, dim, a.length, length);
    place(t.narrow(0, ba, bb), y, dim, b.length, length);
    return t;
  };
  for (size_t l = 0; l < a.keys.size(); ++l) {
    out.keys.push_back(joined(a.keys[l], b.keys[l], 2));
    out.values.push_back(joined(a.values[l], b.values[l], 2));
  }
  out.key_mask = joined(a.key_mask, b.key_mask, 1);
  out.next_position = at::cat({a.next_position, b.next_position});
  return out;
}

}  // namespace tlm
