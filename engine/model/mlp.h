// The gated feed-forward block, SwiGLU (silu) or GeGLU (tanh-approximated GELU, Gemma): gate
// and up are column-parallel, down is row-parallel.
#pragma once

#include <memory>

#include <ATen/core/Tensor.h>

#include "dist/tp_linear.h"

namespace tlm {

class Mlp {
 public:
  Mlp(std::unique_ptr<ColumnParallelLinear> gate, std::unique_ptr<ColumnParallelLinear> up,
      std::unique_ptr<RowParallelLinear> down, bool gelu_tanh = false);
  // down(act(gate(x)) * up(x)); the intermediate stays split over TP.
  at::Tensor forward(const at::Tensor& x) const;

  ColumnParallelLinear& gate_proj() { return *gate_; }
  ColumnParallelLinear& up_proj() { return *up_; }
  RowParallelLinear& down_proj() { return *down_; }
  int64_t weight_bytes() const {
    return gate_->weight_bytes() + up_->weight_bytes() + down_->weight_bytes() +
           (gate_up_ ? gate_up_->packed_bytes() : 0);
  }
  // gate and up as one product from here on (FusedColumnParallelLinear).
  void fuse_gate_up(const CommunicatorPtr& tp, bool backward) {
    gate_up_ = std::make_unique<FusedColumnParallelLinear>(
        tp, std::vector<ColumnParallelLinear*>{gate_.get(), up_.get()}, backward);
  }

 private:
  std::unique_ptr<ColumnParallelLinear> gate_, up_;
  std::unique_ptr<FusedColumnParallelLinear> gate_up_;
  std::unique_ptr<RowParallelLinear> down_;
  bool gelu_tanh_ = false;
};

}  // namespace tlm
