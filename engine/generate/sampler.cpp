#include "engine/generate/sampler.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "engine/common/error.h"

namespace tlm {

Sampler::Sampler(const SamplingOptions& options)
    : options_(options), generator_(at::make_generator<at::CPUGeneratorImpl>(options.seed)) {
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
  return at::multinomial(probs.cpu(), 1, false, generator_).squeeze(-1).to(logits.device());
}

}  // namespace tlm
