// Next-token choice from full-vocabulary logits: greedy (temperature 0, the default and
// what TLM's evaluation uses) or temperature + nucleus (top-p) sampling from a seeded
// generator on the logits' device (a CPU generator on the CPU, a CUDA one on a GPU), so
// sampled runs repeat exactly on the same device and no logits travel to the host.
#pragma once

#include <cstdint>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace tlm {

struct SamplingOptions {
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplingOptions& options, const c10::Device& device = c10::Device(c10::kCPU));
  // logits [B, V] fp32 on the sampler's device -> ids [B] int64 on the same device.
  at::Tensor next(const at::Tensor& logits);

 private:
  SamplingOptions options_;
  at::Generator generator_;
};

}  // namespace tlm
