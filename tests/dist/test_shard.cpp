// shard_range: even splits only, and errors that name both numbers.
#include <string>

#include <gtest/gtest.h>

#include "dist/shard.h"
#include "engine/common/error.h"

namespace tlm {
namespace {

std::string error_of(int64_t full, int rank, int ranks, const std::string& what) {
  try {
    shard_range(full, rank, ranks, what);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ShardRange, EvenSplits) {
  ShardRange r = shard_range(12, 1, 4, "x");
  EXPECT_EQ(r.begin, 3);
  EXPECT_EQ(r.end, 6);
  EXPECT_EQ(r.size(), 3);
  r = shard_range(12, 3, 4, "x");
  EXPECT_EQ(r.begin, 9);
  EXPECT_EQ(r.end, 12);
  r = shard_range(7, 0, 1, "x");
  EXPECT_EQ(r.begin, 0);
  EXPECT_EQ(r.end, 7);
  // The ranks' pieces tile the dimension.
  int64_t next = 0;
  for (int rank = 0; rank < 8; ++rank) {
    ShardRange s = shard_range(64, rank, 8, "x");
    EXPECT_EQ(s.begin, next);
    next = s.end;
  }
  EXPECT_EQ(next, 64);
}

TEST(ShardRange, UnevenSplitNamesBothNumbers) {
  const std::string m = error_of(49155, 0, 2, "vocab_size");
  EXPECT_NE(m.find("vocab_size = 49155"), std::string::npos) << m;
  EXPECT_NE(m.find("tensor-parallel size 2"), std::string::npos) << m;
}

TEST(ShardRange, BadRankThrows) {
  EXPECT_NE(error_of(8, 2, 2, "x").find("invalid rank 2 of 2"), std::string::npos);
  EXPECT_NE(error_of(8, -1, 2, "x").find("invalid rank -1 of 2"), std::string::npos);
  EXPECT_FALSE(error_of(8, 0, 0, "x").empty());
}

}  // namespace
}  // namespace tlm
