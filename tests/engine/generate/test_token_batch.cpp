// right_padded_batch: sequences left-aligned, pad id and mask 0 after each one.
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/generate/token_batch.h"

namespace tlm {
namespace {

TEST(RightPaddedBatch, Layout) {
  TokenBatch b = right_padded_batch({{5, 6, 7}, {8}, {}, {1, 2, 3, 4}}, 9);
  EXPECT_EQ(b.ids.scalar_type(), at::kLong);
  EXPECT_EQ(b.mask.scalar_type(), at::kLong);
  const at::Tensor ids = at::tensor({5, 6, 7, 9, /**/ 8, 9, 9, 9, /**/ 9, 9, 9, 9, /**/ 1, 2, 3, 4},
                                    at::kLong).view({4, 4});
  const at::Tensor mask = at::tensor({1, 1, 1, 0, /**/ 1, 0, 0, 0, /**/ 0, 0, 0, 0, /**/ 1, 1, 1, 1},
                                     at::kLong).view({4, 4});
  EXPECT_TRUE(at::equal(b.ids, ids)) << b.ids;
  EXPECT_TRUE(at::equal(b.mask, mask)) << b.mask;
}

TEST(RightPaddedBatch, LargeIdsAndEdgeCases) {
  TokenBatch b = right_padded_batch({{151643, 0}}, -1);
  EXPECT_TRUE(at::equal(b.ids, at::tensor({151643, 0}, at::kLong).view({1, 2})));
  EXPECT_TRUE(at::equal(b.mask, at::ones({1, 2}, at::kLong)));
  TokenBatch e = right_padded_batch({}, 0);
  EXPECT_EQ(e.ids.sizes(), at::IntArrayRef({0, 0}));
  EXPECT_EQ(e.mask.sizes(), at::IntArrayRef({0, 0}));
}

}  // namespace
}  // namespace tlm
