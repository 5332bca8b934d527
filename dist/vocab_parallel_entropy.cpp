#include "dist/vocab_parallel_entropy.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "dist/mappings.h"
#include "dist/vocab_parallel.h"
#include "engine/common/error.h"

namespace tlm {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Log-sum-exp of each row of this rank's logits [c, V/tp] over the whole vocabulary: [c].
at::Tensor global_logsumexp(const at::Tensor& logits, Communicator& comm) {
  at::Tensor row_max = std::get<0>(logits.max(-1)).contiguous();  // [c]
  comm.all_reduce(row_max, ReduceOp::Max);
  at::Tensor sum_exp = (logits - row_max.unsqueeze(1)).exp_().sum(-1).contiguous();
  comm.all_reduce(sum_exp, ReduceOp::Sum);
  return row_max + sum_exp.log();
}

at::Tensor chunk_logits(const at::Tensor& hidden, const LinearWeight& weight, int64_t r0, int64_t c,
                        int64_t valid) {
  return real_columns(linear(hidden.narrow(0, r0, c), weight).to(at::kFloat), valid);  // [c, valid]
}

struct VocabParallelEntropy : torch::autograd::Function<VocabParallelEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const LinearWeight* weight_ptr,
                            Communicator* comm, int64_t chunk_rows, int64_t valid) {
    const LinearWeight& weight = *weight_ptr;
    const int64_t n = hidden.size(0);
    const at::TensorOptions f32 = hidden.options().dtype(at::kFloat);
    at::Tensor lse = at::zeros({n}, f32), entropy = at::zeros({n}, f32);
    for (int64_t r0 = 0; r0 < n; r0 += chunk_rows) {
      const int64_t c = std::min(chunk_rows, n - r0);
      at::Tensor z = chunk_logits(hidden, weight, r0, c, valid);
      at::Tensor l = global_logsumexp(z, *comm);
      // H = sum_v p_v (lse - z_v): non-negative terms, so no cancellation for peaked
      // distributions (lse - E_p[z] would subtract two numbers close to max z).
      at::Tensor neg_logp = l.unsqueeze(1) - z;                                  // [c, V/tp]
      at::Tensor h = ((-neg_logp).exp() * neg_logp).sum(-1).contiguous();        // local part
      comm->all_reduce(h, ReduceOp::Sum);
      lse.narrow(0, r0, c).copy_(l);
      entropy.narrow(0, r0, c).copy_(h);
    }
    ctx->save_for_backward({hidden, lse, entropy});
    save_weight(ctx, "weight", weight);
    ctx->saved_data["chunk_rows"] = chunk_rows;
    ctx->saved_data["valid"] = valid;
    return entropy;
  }

  // dH/dz_v = -p_v (z_v - E_p[z]) = -p_v (log p_v + H); the hidden gradient is that times this
  // rank's weight shard, a partial sum over TP that copy_to_tp_region completes.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &lse = saved[1], &entropy = saved[2];
    const LinearWeight weight = saved_weight(ctx, "weight");
    const int64_t chunk_rows = ctx->saved_data["chunk_rows"].toInt();
    const int64_t valid = ctx->saved_data["valid"].toInt();
    const at::Tensor& g = grads[0];  // [N]
    at::Tensor grad_hidden = at::empty_like(hidden);
    const int64_t n = hidden.size(0);
    for (int64_t r0 = 0; r0 < n; r0 += chunk_rows) {
      const int64_t c = std::min(chunk_rows, n - r0);
      at::Tensor logp = chunk_logits(hidden, weight, r0, c, valid).sub_(lse.narrow(0, r0, c).unsqueeze(1));
      at::Tensor grad_z = logp.exp() * (logp + entropy.narrow(0, r0, c).unsqueeze(1));
      grad_z.mul_(g.narrow(0, r0, c).unsqueeze(1).neg());
      grad_hidden.narrow(0, r0, c).copy_(input_gradient(pad_columns(grad_z, weight.out_features()), weight));
    }
    return {grad_hidden, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check_rows(const at::Tensor& hidden, int64_t chunk_rows, const char* what) {
  TLM_CHECK(hidden.dim() == 2, what, ": hidden must be [N, H], got ", hidden.sizes());
  TLM_CHECK(chunk_rows > 0, what, ": chunk_rows must be positive");
}

}  // namespace

at::Tensor vocab_parallel_entropy(const at::Tensor& hidden, const LinearWeight& weight_shard,
                                  const CommunicatorPtr& tp, int64_t chunk_rows, int64_t valid_columns) {
  check_rows(hidden, chunk_rows, "vocab_parallel_entropy");
  return VocabParallelEntropy::apply(copy_to_tp_region(hidden, tp), &weight_shard, tp.get(), chunk_rows,
                                     valid_columns);
}

at::Tensor vocab_parallel_mean_probs(const at::Tensor& hidden, const LinearWeight& weight_shard,
                                     const at::Tensor& group, int64_t groups, const CommunicatorPtr& tp,
                                     int64_t chunk_rows, int64_t valid_columns) {
  check_rows(hidden, chunk_rows, "vocab_parallel_mean_probs");
  TLM_CHECK(group.dim() == 1 && group.size(0) == hidden.size(0), "vocab_parallel_mean_probs: group ",
            group.sizes(), " does not match hidden ", hidden.sizes());
  at::NoGradGuard no_grad;
  const at::TensorOptions f32 = hidden.options().dtype(at::kFloat);
  const int64_t width = valid_columns < 0 ? weight_shard.out_features() : valid_columns;
  at::Tensor sums = at::zeros({groups, width}, f32);
  const at::Tensor slot = group.to(at::kLong);  // [N], -1: no group
  const int64_t n = hidden.size(0);
  for (int64_t r0 = 0; r0 < n; r0 += chunk_rows) {
    const int64_t c = std::min(chunk_rows, n - r0);
    at::Tensor z = chunk_logits(hidden.detach(), weight_shard, r0, c, valid_columns);
    at::Tensor p = (z - global_logsumexp(z, *tp).unsqueeze(1)).exp();  // [c, V/tp]
    // One masked column sum per group, not index_add_: on CUDA that adds with atomics, in an
    // order that changes from run to run, and a resumed job would not repeat the uninterrupted
    // one bitwise. Groups are a batch's samples: a few.
    const at::Tensor s = slot.narrow(0, r0, c).unsqueeze(1);  // [c, 1]
    for (int64_t g = 0; g < groups; ++g) sums[g] += p.masked_fill(s != g, 0.0).sum(0);
  }
  const at::Tensor counts = (slot.unsqueeze(0) == at::arange(groups, slot.options()).unsqueeze(1)).sum(1).to(at::kFloat);
  return sums / counts.clamp_min(1.0).unsqueeze(1);
}

}  // namespace tlm
