// LoRA under tensor and data parallelism (ARCHITECTURE.md section 4): assembling full-size
// adapter tensors from the ranks' parts, and making every rank's gradients the gradients
// one process would compute over the global batch.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/communicator.h"
#include "dist/tp_linear.h"

namespace tlm {

// The full tensor from this rank's part: each element comes from its one owner rank, summed
// into zeros (exact). Collective over `tp`; identity (a copy) on one rank.
at::Tensor assemble_full_lora(const at::Tensor& local, const LoraPart& part,
                              const CommunicatorPtr& tp);

// After backward: gradients of shared parts (replicated tensors, replicated KV heads) are
// summed over `tp`, then every LoRA gradient is summed over `dp` (the loss is already
// normalised by the global selected count). Undefined gradients count as zeros (a replica
// with no sample in this step). Collective over both groups; tensors travel in one bucket.
void reduce_lora_gradients(const std::vector<LoraSlot*>& slots, const CommunicatorPtr& tp,
                           const CommunicatorPtr& dp);

// 2-norm of all LoRA gradients over the full (unsharded) adapter: every element counted once,
// by its owner. Collective over `tp`.
double lora_gradient_norm(const std::vector<LoraSlot*>& slots, const CommunicatorPtr& tp);

}  // namespace tlm
