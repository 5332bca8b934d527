// `tlm scalenet-train`: trains ScaleNet (engine/learn/scalenet.h) on records with reference
// answers, by first-order unrolled optimisation (engine/learn/scalenet_training.h): per
// record an episode of K inner steps on the prompt with the net's step sizes, the gold
// answer's NLL under the adapted LoRA, the multiplier gradient chained into the net, and an
// AdamW step of the net. The LoRA (targets, rank, alpha), K and lr come from the episodic
// recipe, so the net fits the jobs that use it (`tlm adapt --config configs/episodic.yaml
// --scalenet FILE`). Writes the net (safetensors) and one JSON line per record to the log.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "dist/process_grid.h"
#include "engine/learn/adapt_config.h"

namespace tlm {

class LlamaModel;
class PromptEncoder;

struct ScaleNetTrainOptions {
  std::string output;            // the trained net (.safetensors)
  std::string log;               // per-record JSONL; empty: <output>.log.jsonl
  std::string init;              // continue from this net; empty: a fresh one (multipliers 1)
  int64_t skip = 0;              // usable records skipped first (train on a later slice)
  int64_t epochs = 1;
  double lr = 1e-4;              // AdamW on the net
  double max_grad_norm = 1.0;    // clipping of the net's gradient (0: off); our choice
  int64_t max_answer_tokens = 64;  // gold answer tokens the outer NLL reads
  uint64_t seed = 0;             // the net's first-layer initialisation
};

nlohmann::json train_scalenet(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                              const ScaleNetTrainOptions& options, const ProcessGrid& grid);

}  // namespace tlm
