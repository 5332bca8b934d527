// RMSNorm as transformers computes it: in fp32, then cast back before the weight multiply.
// A norm's weight lives in a NormSlot, the one place where norm-affine tuning attaches a
// trainable copy (as LoRA attaches to a projection's LoraSlot).
#pragma once

#include <ATen/core/Tensor.h>

namespace tlm {

struct NormSlot {
  at::Tensor weight;   // [H], the base weight in the model's dtype (replicated over TP)
  at::Tensor tuned;    // [H] fp32 trainable copy, or undefined (engine/learn/norm_affine.h)
  bool enabled = true; // false: the base weight even when a tuned copy is attached
  // Per-row weights for one batch whose rows belong to different tuned states (a server
  // decoding several sessions at once): [batch, 1, H] fp32, row i's weight; overrides the rest.
  at::Tensor rows;
  bool active() const { return tuned.defined() && enabled; }
};

// x [..., H], weight [H] -> weight * (x / sqrt(mean(x^2) + eps)), in x's dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// The slot's weight: per-row weights when set, the tuned copy (cast to x's dtype) when active,
// else the base weight. x [batch, T, H] with per-row weights.
at::Tensor rms_norm(const at::Tensor& x, const NormSlot& slot, double eps);

}  // namespace tlm
