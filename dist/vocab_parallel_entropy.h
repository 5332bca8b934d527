// Entropy-type reductions over a vocabulary split over TP ranks (rank r holds the LM-head rows
// [r*P, (r+1)*P), padding included: `valid_columns` as in dist/vocab_parallel.h), for the objectives that minimise the model's uncertainty (Tent, EATA
// and their kin). Like the vocab-parallel log-likelihood they never gather full logits and
// hold fp32 logits for at most `chunk_rows` rows at a time: per chunk, all-reduces over TP of
// the row max, of the sum of exponentials (together the log-sum-exp) and of the entropy terms.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "dist/communicator.h"
#include "engine/kernels/linear_weight.h"

namespace tlm {

// H(softmax(z)) per row, z = hidden W^T: hidden [N, H] (replicated over TP), weight_shard
// [V/tp, H] -> fp32 [N]. H = sum_v p_v (lse(z) - z_v), each rank summing its shard's terms.
// Differentiable w.r.t. `hidden` only: dH/dz = -p * (log p + H); the backward recomputes each
// chunk's logits and is local, and `hidden` goes through copy_to_tp_region inside (callers
// must not wrap it again).
at::Tensor vocab_parallel_entropy(const at::Tensor& hidden, const LinearWeight& weight_shard,
                                  const CommunicatorPtr& tp, int64_t chunk_rows, int64_t valid_columns = -1);

// This rank's shard of the mean of softmax(z) over each group's rows: group [N] int64 (a row's
// group in [0, groups), or -1 for a row that counts nowhere) -> fp32 [groups, valid]. No
// gradient (a statistic, e.g. EATA's redundancy filter). A group without rows is all zeros.
at::Tensor vocab_parallel_mean_probs(const at::Tensor& hidden, const LinearWeight& weight_shard,
                                     const at::Tensor& group, int64_t groups, const CommunicatorPtr& tp,
                                     int64_t chunk_rows, int64_t valid_columns = -1);

}  // namespace tlm
