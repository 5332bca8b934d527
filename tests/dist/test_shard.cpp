// shard_range, head_shard and balanced_range: even splits, KV-head replication, contiguous
// data-parallel blocks, and errors that name both numbers.
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

TEST(VocabShard, PadsAtTheEndAndCountsTheRealRows) {
  // 49155 over 4: 12289 rows each (49156 padded); the last rank holds one padding row.
  int64_t next = 0, real = 0;
  for (int rank = 0; rank < 4; ++rank) {
    const ShardRange s = vocab_shard(49155, rank, 4);
    EXPECT_EQ(s.begin, next);
    EXPECT_EQ(s.size(), 12289);
    real += valid_rows(s, 49155);
    next = s.end;
  }
  EXPECT_EQ(next, 49156);
  EXPECT_EQ(real, 49155);
  EXPECT_EQ(valid_rows(vocab_shard(49155, 3, 4), 49155), 12288);
  EXPECT_EQ(vocab_shard(64, 3, 4).end, 64);  // divisible: no padding
  // A rank that would hold padding only is refused: 5 rows over 4 ranks pad to 2 each.
  std::string m;
  try {
    vocab_shard(5, 0, 4);
  } catch (const Error& e) {
    m = e.what();
  }
  EXPECT_NE(m.find("would hold padding only"), std::string::npos) << m;
}

TEST(ShardRange, BadRankThrows) {
  EXPECT_NE(error_of(8, 2, 2, "x").find("invalid rank 2 of 2"), std::string::npos);
  EXPECT_NE(error_of(8, -1, 2, "x").find("invalid rank -1 of 2"), std::string::npos);
  EXPECT_FALSE(error_of(8, 0, 0, "x").empty());
}

}  // namespace
}  // namespace tlm

namespace tlm {
namespace {

TEST(HeadShard, SplitsHeadsOrReplicatesFewerThanRanks) {
  // 8 heads over 4 ranks: two each.
  EXPECT_EQ(head_shard(8, 3, 4, "h").begin, 6);
  EXPECT_EQ(head_shard(8, 3, 4, "h").end, 8);
  EXPECT_EQ(head_replicas(8, 4), 1);
  // 2 KV heads over 8 ranks: ranks 0-3 hold head 0, ranks 4-7 head 1.
  for (int r = 0; r < 8; ++r) {
    ShardRange s = head_shard(2, r, 8, "kv");
    EXPECT_EQ(s.begin, r / 4);
    EXPECT_EQ(s.size(), 1);
  }
  EXPECT_EQ(head_replicas(2, 8), 4);
}

TEST(HeadShard, RefusesLayoutsThatNeedPadding) {
  std::string m;
  try {
    head_shard(3, 0, 2, "num_key_value_heads");
  } catch (const Error& e) {
    m = e.what();
  }
  EXPECT_NE(m.find("num_key_value_heads = 3"), std::string::npos) << m;
  EXPECT_NE(m.find("tensor-parallel size 2"), std::string::npos) << m;
  m.clear();
  try {
    head_shard(3, 0, 4, "num_key_value_heads");
  } catch (const Error& e) {
    m = e.what();
  }
  EXPECT_NE(m.find("fewer than the tensor-parallel size 4 and does not divide it"), std::string::npos) << m;
}

TEST(BalancedRange, ContiguousBlocksCoverEveryItemOnce) {
  for (int64_t n : {0, 1, 3, 7, 8}) {
    int64_t next = 0;
    for (int r = 0; r < 4; ++r) {
      ShardRange s = balanced_range(n, r, 4);
      EXPECT_EQ(s.begin, next);
      EXPECT_LE(s.size(), (n + 3) / 4);
      next = s.end;
    }
    EXPECT_EQ(next, n);
  }
}

}  // namespace
}  // namespace tlm
