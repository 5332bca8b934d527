#include "dist/vocab_parallel.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "dist/mappings.h"
#include "engine/common/error.h"

namespace tlm {

VocabParallelEmbedding::VocabParallelEmbedding(CommunicatorPtr tp, at::Tensor weight,
                                               int64_t vocab_size)
    : tp_(std::move(tp)),
      weight_(std::move(weight)),
      vocab_size_(vocab_size),
      shard_(tlm::vocab_shard(vocab_size, tp_->rank(), tp_->size())) {
  TLM_CHECK(weight_.dim() == 2 && weight_.size(0) == shard_.size(),
            "VocabParallelEmbedding: local table ", weight_.sizes(), " is not [",
            shard_.size(), ", H]");
}

at::Tensor VocabParallelEmbedding::forward(const at::Tensor& ids) const {
  if (tp_->size() == 1) return at::embedding(weight_, ids);
  at::Tensor outside = (ids < shard_.begin) | (ids >= shard_.end);
  at::Tensor local_ids = (ids - shard_.begin).masked_fill(outside, 0);
  at::Tensor out = at::embedding(weight_, local_ids).masked_fill(outside.unsqueeze(-1), 0);
  return reduce_from_tp_region(out, tp_);
}

at::Tensor real_columns(const at::Tensor& logits, int64_t valid) {
  if (valid < 0 || valid == logits.size(-1)) return logits;
  return logits.narrow(-1, 0, valid);
}

at::Tensor pad_columns(const at::Tensor& grad, int64_t width) {
  if (grad.size(-1) == width) return grad;
  return at::constant_pad_nd(grad, {0, width - grad.size(-1)}, 0.0);
}

at::Tensor vocab_parallel_logits(const at::Tensor& hidden, const LinearWeight& weight_shard,
                                 const CommunicatorPtr& tp, int64_t vocab_size) {
  at::Tensor local = linear(copy_to_tp_region(hidden, tp), weight_shard);  // [N, P]
  return real_columns(gather_from_tp_region(local, tp), vocab_size);       // [N, V]
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct ChunkStats {
  at::Tensor logits;      // [c, valid] fp32: the shard's real columns
  at::Tensor in_shard;    // [c] bool: target lies in this rank's vocabulary shard
  at::Tensor local_tgt;   // [c] int64: target index inside the shard (0 when outside)
};

// `logits`: the chunk's logits when already computed (kept from the forward).
ChunkStats chunk_logits(const at::Tensor& h, const LinearWeight& weight, const at::Tensor& tgt,
                        int64_t vocab_begin, int64_t valid, const at::Tensor& logits = at::Tensor()) {
  ChunkStats s;
  s.logits = logits.defined() ? logits : real_columns(linear(h, weight).to(at::kFloat), valid);
  const int64_t vocab_local = s.logits.size(1);
  s.in_shard = (tgt >= vocab_begin) & (tgt < vocab_begin + vocab_local);
  s.local_tgt = (tgt - vocab_begin).masked_fill(~s.in_shard, 0);
  return s;
}

struct VocabParallelLogLikelihood
    : torch::autograd::Function<VocabParallelLogLikelihood> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden,
                            const LinearWeight* weight_ptr, const at::Tensor& targets,
                            Communicator* comm, int64_t chunk_rows, int64_t valid) {
    const LinearWeight& weight = *weight_ptr;
    const int64_t n = hidden.size(0);
    const int64_t vocab_begin = comm->rank() * weight.out_features();
    at::Tensor logp = at::zeros({n}, hidden.options().dtype(at::kFloat));
    at::Tensor lse = at::zeros({n}, hidden.options().dtype(at::kFloat));
    // Short sequences keep their logits for the backward instead of recomputing them.
    const bool keep = n * weight.out_features() <= kKeptLogitElements;
    std::vector<at::Tensor> kept;
    for (int64_t r0 = 0; r0 < n; r0 += chunk_rows) {
      const int64_t c = std::min(chunk_rows, n - r0);
      at::Tensor tgt = targets.narrow(0, r0, c);
      ChunkStats s = chunk_logits(hidden.narrow(0, r0, c), weight, tgt, vocab_begin, valid);
      at::Tensor row_max = std::get<0>(s.logits.max(-1)).contiguous();  // [c]
      comm->all_reduce(row_max, ReduceOp::Max);
      at::Tensor sum_exp = (s.logits - row_max.unsqueeze(1)).exp_().sum(-1).contiguous();
      comm->all_reduce(sum_exp, ReduceOp::Sum);
      at::Tensor tgt_logit = s.logits.gather(1, s.local_tgt.unsqueeze(1)).squeeze(1)
                                 .masked_fill(~s.in_shard, 0.0).contiguous();
      comm->all_reduce(tgt_logit, ReduceOp::Sum);
      at::Tensor chunk_lse = row_max + sum_exp.log();
      lse.narrow(0, r0, c).copy_(chunk_lse);
      logp.narrow(0, r0, c).copy_((tgt_logit - chunk_lse).masked_fill(tgt < 0, 0.0));
      if (keep) kept.push_back(s.logits);
    }
    ctx->save_for_backward({hidden, targets, lse});
    save_weight(ctx, "weight", weight);
    ctx->saved_data["kept"] = c10::List<at::Tensor>(kept);
    ctx->saved_data["chunk_rows"] = chunk_rows;
    ctx->saved_data["vocab_begin"] = vocab_begin;
    ctx->saved_data["valid"] = valid;
    return logp;
  }

  // d logp / d logits = onehot(target) - softmax(logits); the hidden gradient is that times
  // this rank's weight shard: a partial sum over TP that copy_to_tp_region completes.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& hidden = saved[0];
    const at::Tensor& targets = saved[1];
    const at::Tensor& lse = saved[2];
    const LinearWeight weight = saved_weight(ctx, "weight");
    const c10::List<at::Tensor> kept = ctx->saved_data["kept"].toTensorList();
    const int64_t chunk_rows = ctx->saved_data["chunk_rows"].toInt();
    const int64_t vocab_begin = ctx->saved_data["vocab_begin"].toInt();
    const int64_t valid = ctx->saved_data["valid"].toInt();
    at::Tensor g = grads[0].masked_fill(targets < 0, 0.0);  // [N]
    at::Tensor grad_hidden = at::empty_like(hidden);
    const int64_t n = hidden.size(0);
    for (int64_t r0 = 0; r0 < n; r0 += chunk_rows) {
      const int64_t c = std::min(chunk_rows, n - r0);
      const size_t chunk = static_cast<size_t>(r0 / chunk_rows);
      ChunkStats s = chunk_logits(hidden.narrow(0, r0, c), weight, targets.narrow(0, r0, c), vocab_begin, valid,
                                  kept.empty() ? at::Tensor() : kept.get(chunk));
      at::Tensor gc = g.narrow(0, r0, c).unsqueeze(1);                       // [c, 1]
      at::Tensor grad_logits = (s.logits - lse.narrow(0, r0, c).unsqueeze(1)).exp().neg_();
      at::Tensor hit = gc.squeeze(1).masked_fill(~s.in_shard, 0.0);
      grad_logits.mul_(gc).scatter_add_(1, s.local_tgt.unsqueeze(1), hit.unsqueeze(1));
      grad_hidden.narrow(0, r0, c).copy_(input_gradient(pad_columns(grad_logits, weight.out_features()), weight));
    }
    return {grad_hidden, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor vocab_parallel_token_log_likelihood(const at::Tensor& hidden,
                                               const LinearWeight& weight_shard,
                                               const at::Tensor& targets,
                                               const CommunicatorPtr& tp, int64_t chunk_rows,
                                               int64_t valid_columns) {
  TLM_CHECK(hidden.dim() == 2 && targets.dim() == 1 && hidden.size(0) == targets.size(0),
            "vocab_parallel_token_log_likelihood: hidden ", hidden.sizes(), " and targets ",
            targets.sizes(), " do not match");
  TLM_CHECK(chunk_rows > 0, "chunk_rows must be positive");
  at::Tensor h = copy_to_tp_region(hidden, tp);
  return VocabParallelLogLikelihood::apply(h, &weight_shard, targets.to(at::kLong), tp.get(),
                                           chunk_rows, valid_columns);
}

}  // namespace tlm
