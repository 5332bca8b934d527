#include "dist/shard.h"

#include <algorithm>

#include "engine/common/error.h"

namespace tlm {

ShardRange shard_range(int64_t full, int rank, int ranks, const std::string& what) {
  TLM_CHECK(ranks > 0 && rank >= 0 && rank < ranks, "invalid rank ", rank, " of ", ranks);
  TLM_CHECK(full % ranks == 0, what, " = ", full, " is not divisible by the tensor-parallel size ",
            ranks, "; choose a tp size that divides it");
  const int64_t part = full / ranks;
  return ShardRange{rank * part, (rank + 1) * part};
}

ShardRange head_shard(int64_t heads, int rank, int ranks, const std::string& what) {
  TLM_CHECK(ranks > 0 && rank >= 0 && rank < ranks, "invalid rank ", rank, " of ", ranks);
  TLM_CHECK(heads > 0, what, " = ", heads, " must be positive");
  if (heads >= ranks) return shard_range(heads, rank, ranks, what);
  TLM_CHECK(ranks % heads == 0, what, " = ", heads, " is fewer than the tensor-parallel size ",
            ranks, " and does not divide it, so the heads cannot be replicated evenly; choose a "
            "tp size that is a divisor or a multiple of ", heads);
  const int64_t head = rank / (ranks / heads);
  return ShardRange{head, head + 1};
}

ShardRange vocab_shard(int64_t vocab, int rank, int ranks) {
  TLM_CHECK(ranks > 0 && rank >= 0 && rank < ranks, "invalid rank ", rank, " of ", ranks);
  TLM_CHECK(vocab > 0, "vocab_size = ", vocab, " must be positive");
  const int64_t part = (vocab + ranks - 1) / ranks;
  TLM_CHECK(part * (ranks - 1) < vocab, "vocab_size = ", vocab, " is too small for the tensor-parallel size ", ranks,
            ": padded to ", part, " rows per rank, rank ", ranks - 1, " would hold padding only");
  return ShardRange{rank * part, (rank + 1) * part};
}

int64_t valid_rows(const ShardRange& r, int64_t full) {
  return std::max<int64_t>(0, std::min(r.end, full) - r.begin);
}

int head_replicas(int64_t heads, int ranks) {
  return heads < ranks ? static_cast<int>(ranks / heads) : 1;
}

ShardRange balanced_range(int64_t n, int rank, int ranks) {
  TLM_CHECK(ranks > 0 && rank >= 0 && rank < ranks, "invalid rank ", rank, " of ", ranks);
  return ShardRange{n * rank / ranks, n * (rank + 1) / ranks};
}

}  // namespace tlm
