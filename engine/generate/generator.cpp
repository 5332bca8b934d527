#include "engine/generate/generator.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "engine/common/error.h"
#include "engine/generate/token_batch.h"
#include "engine/model/llama_model.h"

namespace tlm {

std::vector<Generation> generate(const LlamaModel& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const GenerationOptions& options, const TokenCallback& on_token) {
  c10::InferenceMode inference;
  const int64_t B = static_cast<int64_t>(prompts.size());
  std::vector<Generation> out(prompts.size());
  if (B == 0 || options.max_new_tokens <= 0) return out;
  size_t longest = 0;
  for (const auto& p : prompts) {
    TLM_CHECK(!p.empty(), "generate: empty prompt");
    longest = std::max(longest, p.size());
  }
  const int64_t T = static_cast<int64_t>(longest);

  // Left padding keeps every row's last prompt token in the last column.
  TokenBatch batch = left_padded_batch(prompts, options.pad_id, model.device());
  KvCache cache = model.make_cache(B, T + options.max_new_tokens);
  Sampler sampler(options.sampling, model.device());
  // rows[i]: the prompt batch row i decodes. Finished rows leave the batch (and the cache),
  // so every later step computes only the running ones, the output head included.
  std::vector<size_t> rows(prompts.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  at::Tensor hidden = model.forward_hidden(batch.ids, batch.attention_mask(), &cache);  // [B, T, H]
  at::Tensor last = hidden.select(1, T - 1);                                             // [B, H]
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    at::Tensor next = sampler.next(model.logits_of(last));  // [b] on the device
    // The one host synchronisation of a decode step: the stop check needs the tokens.
    const at::Tensor chosen = next.to(at::kCPU);
    auto next_acc = chosen.accessor<int64_t, 1>();
    std::vector<int64_t> running;
    for (size_t i = 0; i < rows.size(); ++i) {
      const size_t row = rows[i];
      const int32_t tok = static_cast<int32_t>(next_acc[static_cast<int64_t>(i)]);
      if (std::find(options.stop_ids.begin(), options.stop_ids.end(), tok) != options.stop_ids.end()) {
        out[row].stopped = true;
        continue;
      }
      out[row].ids.push_back(tok);
      if (on_token) on_token(row, tok);
      running.push_back(static_cast<int64_t>(i));
    }
    if (running.empty() || step + 1 == options.max_new_tokens) break;
    if (running.size() < rows.size()) {
      const at::Tensor keep = at::tensor(running, at::kLong).to(model.device());
      cache.keep_rows(keep);
      next = next.index_select(0, keep);
      std::vector<size_t> kept;
      for (int64_t i : running) kept.push_back(rows[static_cast<size_t>(i)]);
      rows = std::move(kept);
    }
    if (options.should_stop && options.should_stop()) {
      for (Generation& g : out) g.interrupted = !g.stopped;
      break;
    }
    const int64_t b = static_cast<int64_t>(rows.size());
    last = model.forward_hidden(next.view({b, 1}), at::Tensor(), &cache).select(1, 0);
  }
  return out;
}

}  // namespace tlm
