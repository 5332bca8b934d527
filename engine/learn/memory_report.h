// Per-rank memory of an adaptation job, for the log and summary.json "memory":
//   weights           this rank's base weight slices on its device (tensor bytes)
//   trainable         LoRA tensors and their AdamW moments (fp32)
//   peak_activations  the most memory everything else held at once during the job
//                     (activations kept for backward, gradients, logits chunks, KV caches):
//                     the device caching allocator's peak on a GPU, the peak resident set on
//                     the CPU, each less what was resident when the job started and the
//                     trainable state
//   host_rss          the process's resident set at the end (on a GPU job: the host side)
#pragma once

#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "engine/learn/adamw.h"
#include "engine/learn/trainable_set.h"
#include "engine/model/llama_model.h"

namespace tlm {

class MemoryMeter {
 public:
  // Takes the baseline now: construct once the model is loaded, before the adapters exist.
  explicit MemoryMeter(const c10::Device& device);
  // Gathers every rank's figures over `host_world` (a collective) and logs them on rank 0.
  // `optimizer`: null for a job without one (episodic: plain gradient steps).
  nlohmann::json report(const LlamaModel& model, const TrainableSet& trainable, AdamW* optimizer,
                        const CommunicatorPtr& host_world) const;

 private:
  c10::Device device_;
  double base_allocated_ = 0;
  double base_resident_ = 0;
};

}  // namespace tlm
