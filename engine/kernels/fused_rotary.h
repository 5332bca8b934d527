// Rotary position embedding in one pass, for CPU fp32: x * cos + rotate_half(x) * sin, with
// rotate_half(x) = cat(-x2, x1), differentiable in x. The composite it replaces
// (engine/model/rotary.cpp: narrow, neg, cat, two products and a sum, and their backward)
// costs more in dispatch and autograd nodes than in arithmetic at a TLM step's few rows. The
// products and sums are the composite's own, rounded the same way (no FMA contraction), so
// results are bitwise equal to it; the output is contiguous [B, heads, T, D] whatever x's
// strides (q and k arrive as transposed views of the projections).
#pragma once

#include <ATen/core/Tensor.h>

namespace tlm {

// Whether fused_rotary serves x [B, heads, T, D] with cos/sin [B or 1, T, D]: all fp32 on the CPU.
bool fused_rotary_applies(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor fused_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace tlm
