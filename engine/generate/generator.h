// Batched autoregressive generation with a KV cache: prompts of different lengths are
// left-padded into one batch, prefilled in one forward, then decoded a token at a time; a row
// that finishes leaves the batch and its cache, so later steps compute only running rows.
// Runs in inference mode: no autograd graph is built.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/generate/sampler.h"

namespace tlm {

class LlamaModel;

struct GenerationOptions {
  int64_t max_new_tokens = 512;
  SamplingOptions sampling;
  std::vector<int32_t> stop_ids;  // EOS and the template's end-of-turn token
  int32_t pad_id = 0;
  // Asked before each decode step; true ends the generation there, every row marked
  // `interrupted` (a job asked to stop by a signal). Under TP it is a collective: every rank
  // of the group must answer alike. Empty: never.
  std::function<bool()> should_stop;
};

struct Generation {
  std::vector<int32_t> ids;       // new tokens, without the stop token
  bool stopped = false;           // true: a stop token ended it; false: max_new_tokens
  bool interrupted = false;       // should_stop ended it early: the answer is incomplete
};

// Called with (row, token) as each new token is chosen (stop tokens excluded).
using TokenCallback = std::function<void(size_t, int32_t)>;

std::vector<Generation> generate(const LlamaModel& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const GenerationOptions& options,
                                 const TokenCallback& on_token = nullptr);

}  // namespace tlm
