// An adaptation run from prompts to outputs, online or offline (ARCHITECTURE.md section 1):
//   online : for each chunk of `stream_batch` prompts, answer them with the current adapter,
//            then train on them (ce from the current model, constant lr, a fresh optimiser
//            per chunk by default, as the official code does);
//   offline: score every prompt with the adapters off, train one pass (cosine with 10%
//            warmup), then answer every prompt with the adapted model.
// Writes predictions.jsonl, metrics.jsonl, summary.json and the adapter (PEFT format).
// Under a process grid every rank calls it: DP replicas take contiguous blocks of each chunk
// and step batch (generation, scoring, training), TP ranks of a replica work in lockstep,
// and rank 0 writes every output in stream order.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "dist/process_grid.h"
#include "engine/learn/adapt_config.h"

namespace tlm {

class LlamaModel;
class PromptEncoder;

// Returns the summary (also written to summary.json).
nlohmann::json run_adaptation(LlamaModel& model, const PromptEncoder& encoder,
                              const AdaptConfig& config, const std::string& model_path,
                              const ProcessGrid& grid = single_process_grid());

}  // namespace tlm
