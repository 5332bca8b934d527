// Which slice of a full dimension a rank holds. Tensor-parallel splits of weights must be
// even: tlm refuses layouts that would need padding, with both numbers in the message. Heads
// are split whole, and key/value heads are replicated when there are fewer of them than TP
// ranks. The vocabulary is the exception: it is padded (vocab_shard).
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

// The heads [begin, end) rank `rank` of `ranks` computes. With heads >= ranks they must divide
// evenly; with fewer heads than ranks (grouped-query KV heads) ranks must be a multiple of
// heads and rank r gets the one head r / (ranks / heads), shared by ranks / heads ranks.
ShardRange head_shard(int64_t heads, int rank, int ranks, const std::string& what);
// How many TP ranks hold each head: ranks / heads when heads < ranks, else 1.
int head_replicas(int64_t heads, int ranks);

// The vocabulary rows (embedding, LM head) rank `rank` of `ranks` holds: [rank*P, (rank+1)*P)
// with P = ceil(vocab / ranks), the vocabulary padded at its end to P * ranks rows. The rows at
// or past `vocab` are padding: zero weights whose logits every vocab-parallel reduction leaves
// out (valid_rows). Every rank must hold at least one real row.
ShardRange vocab_shard(int64_t vocab, int rank, int ranks);
// How many of `r`'s rows lie below `full` (the real ones of a padded shard).
int64_t valid_rows(const ShardRange& r, int64_t full);

// Data-parallel share of n items: replica `rank` of `ranks` takes the contiguous block
// [n*rank/ranks, n*(rank+1)/ranks) (blocks differ by at most one item; some may be empty),
// so that concatenating the blocks in rank order restores the stream order.
ShardRange balanced_range(int64_t n, int rank, int ranks);

}  // namespace tlm
