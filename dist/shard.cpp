#include "dist/shard.h"

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

int head_replicas(int64_t heads, int ranks) {
  return heads < ranks ? static_cast<int>(ranks / heads) : 1;
}

ShardRange balanced_range(int64_t n, int rank, int ranks) {
  TLM_CHECK(ranks > 0 && rank >= 0 && rank < ranks, "invalid rank ", rank, " of ", ranks);
  return ShardRange{n * rank / ranks, n * (rank + 1) / ranks};
}

}  // namespace tlm
