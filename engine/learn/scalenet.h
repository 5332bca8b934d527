// ScaleNet (Xu, Chen and Yin, "Unsupervised Layer-Wise Dynamic Test Time Adaptation for LLMs",
// arXiv 2602.09719): a small hypernetwork that sets episodic adaptation's step size per layer,
// per adapted projection and per step. A 2-layer MLP (hidden 128, ReLU) maps the features
//   f_k = [mean over the prompt of the residual stream after the first layer (H);
//          mean of the final-normed last hidden states (H); k; K]
// of inner step k (from that step's own forward) to one raw value a per LoRA module, and the
// step's multiplier is g(a) = e^a for a <= 0 and 1 + a + a^2/2 for a > 0 (smooth and
// positive, 1 at a = 0). The inner step is theta_{k+1} = theta_k - lr * g(a_k) * grad_k,
// both LoRA tensors of a module sharing its multiplier.
//
// Our choices where the paper is open: ReLU; the output layer starts at zero, so an untrained
// ScaleNet is the fixed-lr episodic method (g(0) = 1); the first layer is torch.nn.Linear's
// default initialisation from a seed. Saved as safetensors ("fc1.weight" [128, 2H + 2],
// "fc1.bias", "fc2.weight" [M, 128], "fc2.bias"; metadata: hidden_size, modules (JSON list of
// the LoRA module names, in order), width, steps K, lr).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tlm {

struct ScaleNetShape {
  int64_t hidden_size = 0;
  std::vector<std::string> modules;  // LoRA modules in LoraAdapters::modules() order
  int64_t width = 128;
  int64_t steps = 5;                 // K the net was built (and trained) for
  double lr = 1e-2;                  // the base step size it scales
};

// g(a): e^a for a <= 0, 1 + a + a^2/2 for a > 0, elementwise, differentiable.
at::Tensor scalenet_activation(const at::Tensor& a);

class ScaleNet {
 public:
  ScaleNet(ScaleNetShape shape, uint64_t seed, const c10::Device& device);
  // Throws naming the file and the tensor or metadata field that is missing or misshapen.
  static ScaleNet load(const std::string& path, const c10::Device& device);
  // Writes `path` atomically (temporary file + rename).
  void save(const std::string& path) const;

  const ScaleNetShape& shape() const { return shape_; }
  // fc1.weight, fc1.bias, fc2.weight, fc2.bias (fp32, requires_grad).
  const std::vector<at::Tensor>& parameters() const { return params_; }
  std::vector<std::string> parameter_names() const;

  // The raw outputs a [M] for features f_k [2H + 2] (engine/learn/episodic.h's
  // episode_features), differentiable in the parameters.
  at::Tensor raw(const at::Tensor& features) const;
  // g(raw(features)) [M].
  at::Tensor multipliers(const at::Tensor& features) const;

 private:
  ScaleNet(ScaleNetShape shape, std::vector<at::Tensor> params);

  ScaleNetShape shape_;
  std::vector<at::Tensor> params_;
};

}  // namespace tlm
