#include "dist/lora_parallel.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

namespace tlm {
namespace {

at::Tensor& gradient_or_zeros(at::Tensor& param) {
  if (!param.grad().defined()) param.mutable_grad() = at::zeros_like(param);
  return param.mutable_grad();
}

// Sums the tensors over `group` with one collective: flatten, all-reduce, copy back.
void all_reduce_bucket(const std::vector<at::Tensor>& tensors, const CommunicatorPtr& group) {
  if (tensors.empty() || group->size() == 1) return;
  std::vector<at::Tensor> flat;
  for (const at::Tensor& t : tensors) flat.push_back(t.reshape({-1}));
  at::Tensor bucket = at::cat(flat);
  group->all_reduce(bucket, ReduceOp::Sum);
  int64_t offset = 0;
  for (const at::Tensor& t : tensors) {
    t.copy_(bucket.narrow(0, offset, t.numel()).view_as(t));
    offset += t.numel();
  }
}

}  // namespace

at::Tensor assemble_full_lora(const at::Tensor& local, const LoraPart& part,
                              const CommunicatorPtr& tp) {
  at::NoGradGuard no_grad;
  if (tp->size() == 1) return local.detach().clone();
  at::Tensor full = at::zeros(part.full_shape, local.options().requires_grad(false));
  if (part.owner) part.slice_of(full).copy_(local.detach());
  tp->all_reduce(full, ReduceOp::Sum);
  return full;
}

void reduce_lora_gradients(const std::vector<LoraSlot*>& slots, const CommunicatorPtr& tp,
                           const CommunicatorPtr& dp) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> all, replicated;
  std::vector<std::pair<at::Tensor, const LoraPart*>> shared_parts;
  for (LoraSlot* s : slots) {
    for (auto [param, part] : {std::make_pair(&s->A, &s->a_part), std::make_pair(&s->B, &s->b_part)}) {
      at::Tensor& g = gradient_or_zeros(*param);
      all.push_back(g);
      if (!part->shared || tp->size() == 1) continue;
      if (part->dim < 0) replicated.push_back(g);
      else shared_parts.emplace_back(g, part);
    }
  }
  all_reduce_bucket(replicated, tp);
  // A part held by several (not all) ranks: place it in a full-size buffer so each element
  // sums exactly the partial gradients of the ranks that hold it.
  if (!shared_parts.empty()) {
    std::vector<at::Tensor> buffers;
    for (auto& [g, part] : shared_parts) {
      at::Tensor full = at::zeros(part->full_shape, g.options());
      part->slice_of(full).copy_(g);
      buffers.push_back(full);
    }
    all_reduce_bucket(buffers, tp);
    for (size_t i = 0; i < shared_parts.size(); ++i)
      shared_parts[i].first.copy_(shared_parts[i].second->slice_of(buffers[i]));
  }
  all_reduce_bucket(all, dp);
}

double lora_gradient_norm(const std::vector<LoraSlot*>& slots, const CommunicatorPtr& tp) {
  at::NoGradGuard no_grad;
  if (slots.empty()) return 0.0;
  // Summed on the gradients' device and reduced over the device group: one host value at the end.
  at::Tensor sum_sq = at::zeros({1}, slots.front()->A.options().dtype(at::kDouble).requires_grad(false));
  for (LoraSlot* s : slots) {
    for (auto [param, part] : {std::make_pair(&s->A, &s->a_part), std::make_pair(&s->B, &s->b_part)}) {
      if (!part->owner || !param->grad().defined()) continue;
      sum_sq += at::linalg_vector_norm(param->grad().to(at::kDouble), 2).pow(2);
    }
  }
  tp->all_reduce(sum_sq, ReduceOp::Sum);
  return std::sqrt(sum_sq.item<double>());
}

}  // namespace tlm
