#include "engine/model/mlp.h"

#include <ATen/ATen.h>

namespace tlm {

Mlp::Mlp(std::unique_ptr<ColumnParallelLinear> gate, std::unique_ptr<ColumnParallelLinear> up,
         std::unique_ptr<RowParallelLinear> down)
    : gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)) {}

at::Tensor Mlp::forward(const at::Tensor& x) const {
  if (gate_up_) {
    std::vector<at::Tensor> gu = gate_up_->forward(x);
    return down_->forward(at::silu(gu[0]) * gu[1]);
  }
  return down_->forward(at::silu(gate_->forward(x)) * up_->forward(x));
}

}  // namespace tlm
