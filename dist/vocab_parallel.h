// The vocabulary dimension split over TP ranks: rank r holds embedding / LM-head rows
// [r*P, (r+1)*P), P = ceil(V/tp) (vocab_shard: a vocabulary not divisible by tp is padded at
// its end with zero rows). With tied embeddings the head uses the same shard. Every function
// taking `valid_columns` (the shard's real rows, valid_rows; -1 = all) leaves the padding's
// logits out of its reductions, so a padded layout computes what one process does.
#pragma once

#include <ATen/core/Tensor.h>

#include "dist/communicator.h"
#include "dist/shard.h"
#include "engine/kernels/linear_weight.h"

namespace tlm {

class VocabParallelEmbedding {
 public:
  // `weight` [P, H] is this rank's shard of the [V, H] table, padding rows included.
  VocabParallelEmbedding(CommunicatorPtr tp, at::Tensor weight, int64_t vocab_size);
  // ids [...] (any rank's full ids) -> [..., H]; ids outside this shard contribute zeros,
  // the all-reduce fills them in from the rank that owns them.
  at::Tensor forward(const at::Tensor& ids) const;

  const at::Tensor& weight() const { return weight_; }
  ShardRange vocab_shard() const { return shard_; }
  int64_t vocab_size() const { return vocab_size_; }
  int64_t valid_rows() const { return tlm::valid_rows(shard_, vocab_size_); }

 private:
  CommunicatorPtr tp_;
  at::Tensor weight_;
  int64_t vocab_size_;
  ShardRange shard_;
};

// Logit elements (rows x V/tp) a loss keeps from its forward for its backward: 64 MiB of fp32.
constexpr int64_t kKeptLogitElements = int64_t{16} << 20;

// A padded shard's logits [c, P] -> its real columns [c, valid] (a view; valid < 0 or = P:
// unchanged), and the gradient of those columns back to [c, P] with zeros for the padding.
at::Tensor real_columns(const at::Tensor& logits, int64_t valid);
at::Tensor pad_columns(const at::Tensor& grad, int64_t width);

// Full-vocabulary logits for a few positions (generation): h [N, H] -> [N, V], gathered (and
// cut to `vocab_size` when the shards are padded; -1 = all gathered columns).
at::Tensor vocab_parallel_logits(const at::Tensor& hidden, const LinearWeight& weight_shard,
                                 const CommunicatorPtr& tp, int64_t vocab_size = -1);

// log softmax(hidden W^T)[target] for each row, with W's vocabulary rows split over TP,
// never materialising logits for more than `chunk_rows` rows at once and never gathering
// them: per chunk, all-reduces of the row max, of the sum of exponentials and of the target
// logit. hidden [N, H] (replicated over TP), targets [N] int64 (-100 = ignore, gives 0).
// Returns fp32 [N]. Differentiable w.r.t. `hidden` only (base weights are frozen); the
// backward reuses the forward's logits when all of them fit in kKeptLogitElements (short
// sequences: bitwise what recomputing gives), else recomputes each chunk's, and is local; `hidden` goes through
// copy_to_tp_region inside, so the partial input gradients are summed over TP (callers must
// not wrap it again).
at::Tensor vocab_parallel_token_log_likelihood(const at::Tensor& hidden,
                                               const LinearWeight& weight_shard,
                                               const at::Tensor& targets,
                                               const CommunicatorPtr& tp, int64_t chunk_rows,
                                               int64_t valid_columns = -1);

}  // namespace tlm
