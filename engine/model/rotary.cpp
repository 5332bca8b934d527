#include "engine/model/rotary.h"

#include <cmath>

#include <ATen/ATen.h>

#include "engine/common/error.h"
#include "engine/kernels/fused_rotary.h"

namespace tlm {
namespace {

// transformers' _compute_llama3_parameters: low frequencies are divided by `factor`, high
// ones kept, the band between blended smoothly.
at::Tensor llama3_scaled(const at::Tensor& inv_freq, const RopeScaling& s) {
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  at::Tensor smooth = (old_len / wavelen - s.low_freq_factor) /
                      (s.high_freq_factor - s.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  at::Tensor medium = (wavelen < high_freq_wavelen).logical_not().logical_and(
      (wavelen > low_freq_wavelen).logical_not());
  return at::where(medium, smoothed, scaled);
}

}  // namespace

RotaryEmbedding::RotaryEmbedding(const ModelConfig& config,
                                 std::optional<at::Tensor> frequency_factors, c10::Device device) {
  const int64_t dim = config.head_dim;
  // Same arithmetic as transformers: int64 arange cast to fp32, divided in fp32.
  at::Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<float>(dim);
  inv_freq_ = 1.0 / at::pow(config.rope_theta, exponents);
  inv_freq_ = inv_freq_.to(at::kFloat);
  if (config.rope_scaling.type == "linear") inv_freq_ = inv_freq_ / config.rope_scaling.factor;
  if (config.rope_scaling.type == "llama3") inv_freq_ = llama3_scaled(inv_freq_, config.rope_scaling);
  if (frequency_factors) {
    TLM_CHECK(frequency_factors->numel() == dim / 2, "rope_freqs.weight has ",
              frequency_factors->numel(), " values, expected head_dim/2 = ", dim / 2);
    inv_freq_ = inv_freq_ / frequency_factors->to(at::kFloat);
  }
  inv_freq_ = inv_freq_.to(device);
}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::cos_sin(const at::Tensor& positions,
                                                           at::ScalarType dtype) const {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [B, T, D/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                            // [B, T, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (fused_rotary_applies(x, cos, sin)) return fused_rotary(x, cos, sin);  // CPU fp32: one pass, same rounding
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half);
  at::Tensor x2 = x.narrow(-1, half, half);
  at::Tensor rotated = at::cat({x2.neg(), x1}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

}  // namespace tlm
