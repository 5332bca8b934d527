// `tlm adapt` with mode: episodic (engine/learn/episodic.h): the stream in chunks of
// stream_batch prompts; each replica takes its block of a chunk and, per prompt, adapts a
// fresh LoRA for K steps, answers, scores the reference answer under that prompt's adapter,
// and resets; rank 0 writes the chunk's answers and one metrics.jsonl line per prompt
// ({"ce": [NLL before], "current_ce": [NLL after K steps], "episode_nll": [K + 1 values]}).
// No adapter is left at the end (each episode's is discarded), so the job saves none and its
// forgetting is zero by construction. A signal (SIGTERM, SIGINT, SIGUSR1) stops the job before
// its next episode or decode step; the chunk in progress is dropped and summary.json records how
// far the stream got ("stopped": true, "episodic_progress"): `--resume latest` into the same
// output directory continues at the next chunk (episodes are independent: no adapter or
// optimiser state carries over), and the outputs end bitwise as the uninterrupted job's.
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
