#include "engine/learn/objective.h"

#include <ATen/ATen.h>

#include "engine/common/error.h"

namespace tlm {

at::Tensor scored_positions(const ObjectiveBatch& batch) {
  const at::Tensor& mask = batch.tokens.mask;  // [B, T]
  at::Tensor real = mask.to(at::kBool);
  if (batch.scored_from.empty()) return real;
  const int64_t B = mask.size(0), T = mask.size(1);
  TLM_CHECK(static_cast<int64_t>(batch.scored_from.size()) == B && static_cast<int64_t>(batch.scored_to.size()) == B,
            "scored positions: ", batch.scored_from.size(), " / ", batch.scored_to.size(), " bounds for ", B, " rows");
  const at::Tensor from = at::tensor(batch.scored_from, at::kLong).to(mask.device()).unsqueeze(1);  // [B, 1]
  const at::Tensor to = at::tensor(batch.scored_to, at::kLong).to(mask.device()).unsqueeze(1);
  const at::Tensor t = at::arange(T, mask.options().dtype(at::kLong)).unsqueeze(0);                // [1, T]
  return real & (t >= from) & (t < to);
}

ScoredRows scored_rows(const at::Tensor& hidden, const at::Tensor& positions) {
  const int64_t B = hidden.size(0), T = hidden.size(1);
  TLM_CHECK(positions.sizes() == at::IntArrayRef({B, T}), "scored rows: positions ", positions.sizes(),
            " do not match hidden ", hidden.sizes());
  const at::Tensor flat = positions.reshape({-1}).nonzero().squeeze(1);  // [N] int64
  return {hidden.reshape({B * T, hidden.size(2)}).index_select(0, flat), at::div(flat, T, "floor")};
}

at::Tensor per_sample_mean(const at::Tensor& values, const at::Tensor& sample, int64_t batch) {
  const at::Tensor v = values.to(at::kFloat);
  // A [batch, N] membership mask and row sums, not index_add: on CUDA that adds with atomics
  // in an order that changes from run to run (a resumed job would not repeat the uninterrupted
  // one bitwise); a row sum's order is fixed. Autograd flows through the masked copy to `values`.
  const at::Tensor member = sample.unsqueeze(0) == at::arange(batch, sample.options()).unsqueeze(1);  // [batch, N]
  const at::Tensor sums = v.unsqueeze(0).expand({batch, v.size(0)}).masked_fill(~member, 0.0).sum(1);
  return sums / member.sum(1).to(at::kFloat).clamp_min(1.0);
}

}  // namespace tlm
