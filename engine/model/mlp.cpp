#include "engine/model/mlp.h"

#include <ATen/ATen.h>

namespace tlm {

Mlp::Mlp(std::unique_ptr<ColumnParallelLinear> gate, std::unique_ptr<ColumnParallelLinear> up,
         std::unique_ptr<RowParallelLinear> down, bool gelu_tanh)
    : gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)), gelu_tanh_(gelu_tanh) {}

at::Tensor Mlp::forward(const at::Tensor& x) const {
  auto act = [this](const at::Tensor& g) { return gelu_tanh_ ? at::gelu(g, "tanh") : at::silu(g); };
  if (gate_up_) {
    std::vector<at::Tensor> gu = gate_up_->forward(x);
    return down_->forward(act(gu[0]) * gu[1]);
  }
  return down_->forward(act(gate_->forward(x)) * up_->forward(x));
}

}  // namespace tlm
