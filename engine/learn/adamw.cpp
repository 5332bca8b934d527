#include "engine/learn/adamw.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

namespace tlm {

AdamW::AdamW(std::vector<at::Tensor> params, const AdamWOptions& options)
    : params_(std::move(params)), options_(options) {
  reset();
}

void AdamW::reset() {
  exp_avg_.clear();
  exp_avg_sq_.clear();
  for (const at::Tensor& p : params_) {
    exp_avg_.push_back(at::zeros_like(p, at::MemoryFormat::Preserve).detach());
    exp_avg_sq_.push_back(at::zeros_like(p, at::MemoryFormat::Preserve).detach());
  }
  step_ = 0;
}

void AdamW::zero_grad() {
  for (at::Tensor& p : params_) {
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    params.push_back(params_[i]);
    grads.push_back(params_[i].grad());
    exp_avgs.push_back(exp_avg_[i]);
    exp_avg_sqs.push_back(exp_avg_sq_[i]);
  }
  if (params.empty()) return;
  const c10::DeviceType device = params.front().device().type();
  if (device == c10::kCPU || device == c10::kCUDA) {
    // LibTorch's fused AdamW (torch.optim.AdamW(fused=True)): every parameter in one call, the
    // same arithmetic per element in another grouping of its roundings. Seven element-wise
    // kernels per parameter and their dispatch cost more than the arithmetic for LoRA's
    // small tensors (README, "Speed").
    const at::Tensor step = at::full({}, static_cast<double>(step_), params.front().options().dtype(at::kFloat));
    const std::vector<at::Tensor> steps(params.size(), step);
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, {}, steps, lr, options_.beta1, options_.beta2,
                      options_.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false);
    return;
  }
  // Elsewhere (the meta device, on which memory plans run: the fused kernel has no meta
  // version) torch's single-tensor path, op by op.
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (size_t i = 0; i < params.size(); ++i) {
    if (options_.weight_decay != 0.0) params[i].mul_(1.0 - lr * options_.weight_decay);
    exp_avgs[i].lerp_(grads[i], 1.0 - options_.beta1);
    exp_avg_sqs[i].mul_(options_.beta2).addcmul_(grads[i], grads[i], 1.0 - options_.beta2);
    at::Tensor denom = (exp_avg_sqs[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    params[i].addcdiv_(exp_avgs[i], denom, -step_size);
  }
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const at::Tensor& p : params)
    if (p.grad().defined()) norms.push_back(at::linalg_vector_norm(p.grad(), 2));
  if (norms.empty()) return 0.0;
  at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);
  const double norm = total.item<double>();
  if (max_norm > 0.0 && std::isfinite(norm)) {
    at::Tensor coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
    for (const at::Tensor& p : params)
      if (p.grad().defined()) p.grad().mul_(coef);
  }
  return norm;
}

}  // namespace tlm
