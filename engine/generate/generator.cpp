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
  std::vector<bool> done(prompts.size(), false);
  at::Tensor hidden = model.forward_hidden(batch.ids, batch.attention_mask(), &cache);  // [B, T, H]
  at::Tensor last = hidden.select(1, T - 1);                                             // [B, H]
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    at::Tensor next = sampler.next(model.logits_of(last));  // [B] on the device
    // The one host synchronisation of a decode step: the stop check needs the tokens.
    const at::Tensor chosen = next.to(at::kCPU);
    auto next_acc = chosen.accessor<int64_t, 1>();
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      const size_t row = static_cast<size_t>(b);
      if (done[row]) continue;
      const int32_t tok = static_cast<int32_t>(next_acc[b]);
      if (std::find(options.stop_ids.begin(), options.stop_ids.end(), tok) != options.stop_ids.end()) {
        done[row] = true;
        out[row].stopped = true;
        continue;
      }
      out[row].ids.push_back(tok);
      if (on_token) on_token(row, tok);
      all_done = false;
    }
    if (all_done || step + 1 == options.max_new_tokens) break;
    // Finished rows keep decoding (their outputs are ignored) so the batch stays rectangular.
    last = model.forward_hidden(next.view({B, 1}), at::Tensor(), &cache).select(1, 0);
  }
  return out;
}

}  // namespace tlm
