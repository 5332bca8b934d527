#include "engine/generate/sampler.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <mutex>

#include "engine/common/error.h"

namespace tlm {

namespace {

// A fresh generator of `device`'s kind seeded with `seed`: the CPU's Mersenne twister, or
// the accelerator's own (Philox on CUDA) made through its hooks, so nothing here names CUDA.
at::Generator seeded_generator(const c10::Device& device, uint64_t seed) {
  if (device.is_cpu() || device.is_meta()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Generator gen =
      at::globalContext().getAcceleratorHooksInterface(device.type()).getNewGenerator(device.index());
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
  return gen;
}

}  // namespace

Sampler::Sampler(const SamplingOptions& options, const c10::Device& device)
    : options_(options), generator_(seeded_generator(device, options.seed)) {
  TLM_CHECK(options.temperature >= 0.0, "temperature must be >= 0, got ", options.temperature);
  TLM_CHECK(options.top_p > 0.0 && options.top_p <= 1.0, "top_p must be in (0, 1], got ",
            options.top_p);
}

at::Tensor Sampler::next(const at::Tensor& logits) {
  if (options_.temperature == 0.0) return logits.argmax(-1);
  at::Tensor probs = at::softmax(logits.to(at::kFloat) / options_.temperature, -1);  // [B, V]
  if (options_.top_p < 1.0) {
    // Keep the smallest set of most likely tokens whose mass reaches top_p (always >= 1).
    auto [sorted, order] = probs.sort(-1, /*descending=*/true);
    at::Tensor mass_before = sorted.cumsum(-1) - sorted;
    sorted.masked_fill_(mass_before >= options_.top_p, 0.0);
    probs = at::zeros_like(probs).scatter_(-1, order, sorted);
  }
  return at::multinomial(probs, 1, false, generator_).squeeze(-1);
}

}  // namespace tlm
