#include "dist/mappings.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace tlm {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor all_reduce_sum(const at::Tensor& x, Communicator& comm) {
  at::Tensor out = x.contiguous().clone();
  comm.all_reduce(out, ReduceOp::Sum);
  return out;
}

at::Tensor own_last_dim_slice(const at::Tensor& x, const Communicator& comm) {
  const int64_t full = x.size(-1);
  TORCH_CHECK(full % comm.size() == 0, "scatter_to_tp_region: last dim ", full,
              " is not divisible by the tensor-parallel size ", comm.size());
  const int64_t part = full / comm.size();
  return x.narrow(-1, comm.rank() * part, part).contiguous();
}

struct CopyToRegion : torch::autograd::Function<CopyToRegion> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, Communicator* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    return {all_reduce_sum(grads[0], *comm), at::Tensor()};
  }
};

struct ReduceFromRegion : torch::autograd::Function<ReduceFromRegion> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x, Communicator* comm) {
    return all_reduce_sum(x, *comm);
  }
  static variable_list backward(AutogradContext*, variable_list grads) {
    return {grads[0], at::Tensor()};
  }
};

struct ScatterToRegion : torch::autograd::Function<ScatterToRegion> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, Communicator* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    return own_last_dim_slice(x, *comm);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    return {comm->all_gather(grads[0].contiguous(), -1), at::Tensor()};
  }
};

struct GatherFromRegion : torch::autograd::Function<GatherFromRegion> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, Communicator* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    return comm->all_gather(x.contiguous(), -1);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    return {own_last_dim_slice(grads[0], *comm), at::Tensor()};
  }
};

}  // namespace

// The communicator outlives every graph built with it (layers hold the shared_ptr), so the
// autograd nodes keep a raw pointer.
at::Tensor copy_to_tp_region(const at::Tensor& x, const CommunicatorPtr& tp) {
  if (tp->size() == 1) return x;
  return CopyToRegion::apply(x, tp.get());
}

at::Tensor reduce_from_tp_region(const at::Tensor& x, const CommunicatorPtr& tp) {
  if (tp->size() == 1) return x;
  return ReduceFromRegion::apply(x, tp.get());
}

at::Tensor scatter_to_tp_region(const at::Tensor& x, const CommunicatorPtr& tp) {
  if (tp->size() == 1) return x;
  return ScatterToRegion::apply(x, tp.get());
}

at::Tensor gather_from_tp_region(const at::Tensor& x, const CommunicatorPtr& tp) {
  if (tp->size() == 1) return x;
  return GatherFromRegion::apply(x, tp.get());
}

}  // namespace tlm
