// RMSNorm as transformers computes it: in fp32, then cast back before the weight multiply.
#pragma once

#include <ATen/core/Tensor.h>

namespace tlm {

// x [..., H], weight [H] -> weight * (x / sqrt(mean(x^2) + eps)), in x's dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace tlm
