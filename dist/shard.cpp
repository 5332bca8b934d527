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

}  // namespace tlm
