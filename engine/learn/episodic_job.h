// `tlm adapt` with mode: episodic (engine/learn/episodic.h): the stream in chunks of
// stream_batch prompts; each replica takes its block of a chunk and, per prompt, adapts a
// fresh LoRA for K steps, answers, scores the reference answer under that prompt's adapter,
// and resets; rank 0 writes the chunk's answers and one metrics.jsonl line per prompt
// ({"ce": [NLL before], "current_ce": [NLL after K steps], "episode_nll": [K + 1 values]}).
// No adapter is left at the end (each episode's is discarded), so the job saves none and its
// forgetting is zero by construction. Episodes are independent: a stopped job reruns.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "dist/process_grid.h"
#include "engine/learn/adapt_config.h"

namespace tlm {

class LlamaModel;
class PromptEncoder;

nlohmann::json run_episodic(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                            const std::string& model_path, const ProcessGrid& grid);

}  // namespace tlm
