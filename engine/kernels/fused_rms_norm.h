// RMSNorm in one pass per row each way, for CPU fp32: y = w * (x * rsqrt(mean(x^2) + eps)) over
// the last dimension, differentiable in x and w. The composite of ATen ops it replaces
// (engine/model/rms_norm.cpp) costs some 6 kernels forward and 12 backward per norm, each
// with its dispatch and autograd node; at the few rows of a TLM step on a short prompt that
// overhead, not the arithmetic, is the norm's time (README, "Speed"). Results differ from the
// composite by rounding only (the mean's summation order; tests/engine/kernels states how far).
#pragma once

#include <ATen/core/Tensor.h>

namespace tlm {

// Whether fused_rms_norm serves x [..., H] and weight [H]: both fp32 on the CPU.
bool fused_rms_norm_applies(const at::Tensor& x, const at::Tensor& weight);
at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace tlm
