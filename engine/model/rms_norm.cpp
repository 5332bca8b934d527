#include "engine/model/rms_norm.h"

#include <ATen/ATen.h>

#include "engine/kernels/fused_rms_norm.h"

namespace tlm {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (fused_rms_norm_applies(x, weight)) return fused_rms_norm(x, weight, eps);  // CPU fp32: one pass
  at::Tensor h = x.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  // An fp32 weight on a lower-precision x multiplies before the cast (Gemma's (x * w).to(dtype));
  // a weight in x's dtype after it (Llama's w * x.to(dtype)). The same in fp32.
  if (weight.scalar_type() == at::kFloat && x.scalar_type() != at::kFloat) return (h * weight).to(x.scalar_type());
  return weight * h.to(x.scalar_type());
}

at::Tensor rms_norm(const at::Tensor& x, const NormSlot& slot, double eps) {
  if (slot.rows.defined()) return rms_norm(x, slot.rows.to(x.scalar_type()), eps);
  if (!slot.active()) return rms_norm(x, slot.weight, eps);
  return rms_norm(x, slot.tuned.to(x.scalar_type()), eps);
}

}  // namespace tlm
