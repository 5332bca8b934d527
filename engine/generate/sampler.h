// Next-token choice from full-vocabulary logits: greedy (temperature 0, the default and
// what TLM's evaluation uses) or temperature + nucleus (top-p) sampling from a seeded
// generator, so sampled runs repeat exactly.
#pragma once

#include <cstdint>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace tlm {

struct SamplingOptions {
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  // logits [B, V] fp32 -> ids [B] int64.
  at::Tensor next(const at::Tensor& logits);

 private:
  SamplingOptions options_;
  at::Generator generator_;
};

}  // namespace tlm
