#include "engine/model/rms_norm.h"

#include <ATen/ATen.h>

namespace tlm {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor h = x.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(x.scalar_type());
}

at::Tensor rms_norm(const at::Tensor& x, const NormSlot& slot, double eps) {
  if (!slot.active()) return rms_norm(x, slot.weight, eps);
  return rms_norm(x, slot.tuned.to(x.scalar_type()), eps);
}

}  // namespace tlm
