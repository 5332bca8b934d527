#include "dist/vocab_parallel_rows.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/mappings.h"
#include "engine/common/error.h"

namespace tlm {
namespace {

void check_shard(const at::Tensor& z, const char* what) {
  TLM_CHECK(z.dim() == 2, what, ": logits must be [N, V/tp], got ", z.sizes());
  TLM_CHECK(z.scalar_type() == at::kFloat, what, ": logits must be fp32, got ", z.scalar_type());
}

// The full-vocabulary max of each row, detached: [N, 1].
at::Tensor row_max(const at::Tensor& z, const CommunicatorPtr& tp) {
  at::NoGradGuard no_grad;
  at::Tensor m = std::get<0>(z.detach().max(-1)).contiguous();
  if (tp->size() > 1) tp->all_reduce(m, ReduceOp::Max);
  return m.unsqueeze(1);
}

// A replicated per-row value [N, 1] entering this rank's shard-local terms. Each rank's
// backward sees only its own shard's share of the value's gradient, so the value goes through
// copy_to_tp_region (forward identity, backward all-reduce) on that path -- and only on that
// path: terms computed identically on every rank (COME's uncertainty mass) use the value as
// it is, or their gradient would be counted tp times.
at::Tensor local(const at::Tensor& replicated, const CommunicatorPtr& tp) {
  return copy_to_tp_region(replicated, tp);
}

}  // namespace

at::Tensor vocab_parallel_row_sum(const at::Tensor& x, const CommunicatorPtr& tp) {
  return reduce_from_tp_region(x.sum(-1).contiguous(), tp);
}

at::Tensor vocab_parallel_logsumexp(const at::Tensor& z, const CommunicatorPtr& tp) {
  check_shard(z, "vocab_parallel_logsumexp");
  const at::Tensor m = row_max(z, tp);
  return m.squeeze(1) + vocab_parallel_row_sum((z - m).exp(), tp).log();
}

at::Tensor vocab_parallel_norm(const at::Tensor& z, const CommunicatorPtr& tp) {
  check_shard(z, "vocab_parallel_norm");
  return vocab_parallel_row_sum(z * z, tp).sqrt();
}

at::Tensor vocab_parallel_opinion_entropy(const at::Tensor& z, const CommunicatorPtr& tp, double k,
                                          double eps) {
  check_shard(z, "vocab_parallel_opinion_entropy");
  TLM_CHECK(k > 0.0, "opinion entropy: the uncertainty mass K must be positive, got ", k);
  const at::Tensor norm = vocab_parallel_norm(z, tp).unsqueeze(1);   // [N, 1]
  const at::Tensor zp = z / local(norm, tp) * norm.detach();
  const at::Tensor log_k = at::full_like(norm, std::log(k));
  const at::Tensor log_s = at::logaddexp(vocab_parallel_logsumexp(zp, tp).unsqueeze(1), log_k);  // [N, 1]
  const at::Tensor b = (zp - local(log_s, tp)).exp() + eps;          // [N, V/tp]
  const at::Tensor u = (log_k - log_s).exp() + eps;                  // [N, 1]
  return -vocab_parallel_row_sum(b * b.log(), tp) - (u * u.log()).squeeze(1);
}

at::Tensor vocab_parallel_kl(const at::Tensor& z, const at::Tensor& y, const CommunicatorPtr& tp) {
  check_shard(z, "vocab_parallel_kl");
  TLM_CHECK(y.sizes() == z.sizes(), "vocab_parallel_kl: reference logits ", y.sizes(), " do not match ", z.sizes());
  const at::Tensor logp = z - local(vocab_parallel_logsumexp(z, tp).unsqueeze(1), tp);
  at::Tensor logq;
  {
    at::NoGradGuard no_grad;
    const at::Tensor yd = y.detach().to(at::kFloat);
    logq = yd - vocab_parallel_logsumexp(yd, tp).unsqueeze(1);
  }
  return vocab_parallel_row_sum(logp.exp() * (logp - logq), tp);
}

at::Tensor vocab_parallel_entropy_of_logits(const at::Tensor& z, const CommunicatorPtr& tp) {
  check_shard(z, "vocab_parallel_entropy_of_logits");
  const at::Tensor logp = z - local(vocab_parallel_logsumexp(z, tp).unsqueeze(1), tp);
  return -vocab_parallel_row_sum(logp.exp() * logp, tp);
}

}  // namespace tlm
