// Which slice of a full dimension a rank holds. Splits must be even: tlm refuses layouts
// that would need padding, with both numbers in the message.
#pragma once

#include <cstdint>
#include <string>

namespace tlm {

struct ShardRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// Rank `rank` of `ranks` holds [rank * full/ranks, (rank+1) * full/ranks). `what` names the
// dimension for the error when `full` is not divisible by `ranks`.
ShardRange shard_range(int64_t full, int rank, int ranks, const std::string& what);

}  // namespace tlm
