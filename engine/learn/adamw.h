// AdamW equal to torch.optim.AdamW: decoupled weight decay applied to the parameter first,
// moments updated with lerp / addcmul, bias-corrected step; on CPU and CUDA through LibTorch's
// fused kernel (fused=True), elsewhere op by op (the single-tensor path). State is plain
// tensors so checkpoints can store and restore it exactly.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tlm {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, const AdamWOptions& options);

  // One update of every parameter from its .grad() with learning rate `lr`.
  void step(double lr);
  void zero_grad();
  // Fresh moments and step count (the official online setting rebuilds the optimiser).
  void reset();

  int64_t step_count() const { return step_; }
  void set_step_count(int64_t step) { step_ = step; }
  std::vector<at::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<at::Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  const std::vector<at::Tensor>& params() const { return params_; }
  const AdamWOptions& options() const { return options_; }

 private:
  std::vector<at::Tensor> params_;
  AdamWOptions options_;
  std::vector<at::Tensor> exp_avg_;
  std::vector<at::Tensor> exp_avg_sq_;
  int64_t step_ = 0;
};

// torch.nn.utils.clip_grad_norm_: total 2-norm of all gradients; when max_norm > 0 every
// gradient is multiplied by min(1, max_norm / (norm + 1e-6)). Returns the norm before
// clipping (non-finite when any gradient is).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace tlm
