// Reductions over a vocabulary split over TP ranks for the objectives that need more than the
// entropy (COME's opinion entropy, the reverse KL of SyTTA's trust region), written as autograd
// compositions of this rank's logit shard z [N, V/tp] (fp32, differentiable) and Megatron's
// reduce_from_tp_region (forward all-reduce, backward identity), so that their backward is
// autograd's. Each holds a few [N, V/tp] intermediates: meant for the rows an objective scores
// (a prompt, or the G positions of a generated answer), not for whole corpora -- the streaming
// chunked kernels are in vocab_parallel.h and vocab_parallel_entropy.h. Full logits are never
// gathered. A replicated row value (a log-sum-exp, a norm) that enters shard-local terms goes
// through copy_to_tp_region there, so that its gradient is summed over the shards.
#pragma once

#include <ATen/core/Tensor.h>

#include "dist/communicator.h"

namespace tlm {

// sum over the full vocabulary of each row of `x` [N, V/tp] -> [N], differentiable.
at::Tensor vocab_parallel_row_sum(const at::Tensor& x, const CommunicatorPtr& tp);
// log-sum-exp over the full vocabulary -> [N], differentiable (the max shift is a constant).
at::Tensor vocab_parallel_logsumexp(const at::Tensor& z, const CommunicatorPtr& tp);
// The L2 norm of each full logit row -> [N], differentiable.
at::Tensor vocab_parallel_norm(const at::Tensor& z, const CommunicatorPtr& tp);

// COME's "entropy of opinion" (Zhang et al., ICLR 2025, as the official code computes it):
// z' = z / ||z|| * ||z||.detach() (the same value, the norm held fixed in the gradient), the
// subjective opinion b_v = e^{z'_v} / S and uncertainty mass u = K / S with S = sum e^{z'} + K,
// and H = -sum_v (b_v + eps) log(b_v + eps) - (u + eps) log(u + eps). Computed in log space
// (log S = logaddexp(lse(z'), log K)), so large logits do not overflow. -> [N], differentiable.
at::Tensor vocab_parallel_opinion_entropy(const at::Tensor& z, const CommunicatorPtr& tp, double k,
                                          double eps = 1e-7);

// KL(softmax(z) || softmax(y)) per row -> [N], differentiable w.r.t. z (y: a reference's logit
// shard, e.g. the frozen base model's, detached).
at::Tensor vocab_parallel_kl(const at::Tensor& z, const at::Tensor& y, const CommunicatorPtr& tp);

// Entropy of softmax(z) per row -> [N], differentiable (the autograd twin of
// vocab_parallel_entropy, for rows whose logits are already at hand).
at::Tensor vocab_parallel_entropy_of_logits(const at::Tensor& z, const CommunicatorPtr& tp);

}  // namespace tlm
