// Megatron's four tensor-parallel region operations as autograd functions. Each is the
// adjoint of another, which is what makes the backward pass of a TP model exact:
//   copy_to_tp_region      forward identity          backward all-reduce(sum)
//   reduce_from_tp_region  forward all-reduce(sum)   backward identity
//   scatter_to_tp_region   forward keep own slice    backward all-gather   (last dim)
//   gather_from_tp_region  forward all-gather        backward keep own slice (last dim)
// On a size-1 group they return their input unchanged (no autograd node).
#pragma once

#include <ATen/core/Tensor.h>

#include "dist/communicator.h"

namespace tlm {

at::Tensor copy_to_tp_region(const at::Tensor& x, const CommunicatorPtr& tp);
at::Tensor reduce_from_tp_region(const at::Tensor& x, const CommunicatorPtr& tp);
at::Tensor scatter_to_tp_region(const at::Tensor& x, const CommunicatorPtr& tp);
at::Tensor gather_from_tp_region(const at::Tensor& x, const CommunicatorPtr& tp);

}  // namespace tlm
