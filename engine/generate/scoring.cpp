#include "engine/generate/scoring.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "engine/common/error.h"
#include "engine/generate/token_batch.h"
#include "engine/model/llama_model.h"

namespace tlm {

namespace {

// Indices from shortest to longest: batches of similar lengths waste little compute on
// padding (a batch is padded to its longest row).
std::vector<size_t> shortest_first(const std::vector<size_t>& lengths) {
  std::vector<size_t> order(lengths.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return lengths[a] < lengths[b]; });
  return order;
}

}  // namespace

std::vector<double> mean_token_nll(const LlamaModel& model,
                                   const std::vector<std::vector<int32_t>>& sequences,
                                   int64_t batch_size, int32_t pad_id) {
  c10::InferenceMode inference;
  TLM_CHECK(batch_size > 0, "batch size must be positive");
  for (const auto& s : sequences)
    TLM_CHECK(s.size() >= 2, "mean_token_nll: a sequence of ", s.size(),
              " token(s) has no next-token target");
  std::vector<double> out(sequences.size());
  std::vector<size_t> lengths;
  for (const auto& s : sequences) lengths.push_back(s.size());
  const std::vector<size_t> order = shortest_first(lengths);
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(batch_size));
    std::vector<std::vector<int32_t>> chunk;
    for (size_t i = start; i < end; ++i) chunk.push_back(sequences[order[i]]);
    TokenBatch batch = right_padded_batch(chunk, pad_id, model.device());
    at::Tensor logp = model.token_log_likelihoods(batch.ids, batch.attention_mask());  // [b, T-1]
    at::Tensor counts = batch.mask.sum(1) - 1;                                         // [b]
    // One host copy per batch: the values are the result.
    at::Tensor ce = (-logp.sum(1).to(at::kDouble) / counts.to(at::kDouble)).to(at::kCPU).contiguous();
    auto acc = ce.accessor<double, 1>();
    for (size_t i = start; i < end; ++i) out[order[i]] = acc[static_cast<int64_t>(i - start)];
  }
  return out;
}

ContinuationNll continuation_nll(const LlamaModel& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const std::vector<std::vector<int32_t>>& continuations,
                                 int64_t batch_size, int32_t pad_id) {
  c10::InferenceMode inference;
  TLM_CHECK(prompts.size() == continuations.size(), "continuation_nll: ", prompts.size(),
            " prompts for ", continuations.size(), " continuations");
  ContinuationNll total;
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int64_t> prompt_lens;
  auto flush = [&]() {
    if (seqs.empty()) return;
    TokenBatch batch = right_padded_batch(seqs, pad_id, model.device());
    at::Tensor logp = model.token_log_likelihoods(batch.ids, batch.attention_mask());  // [b, T-1]
    // Position t predicts token t+1: continuation tokens start at index prompt_len.
    const at::TensorOptions index = batch.ids.options();
    at::Tensor t_index = at::arange(logp.size(1), index).unsqueeze(0);
    at::Tensor starts = at::tensor(prompt_lens, at::kLong).to(batch.ids.device()).unsqueeze(1) - 1;
    at::Tensor in_answer = (t_index >= starts) & batch.mask.narrow(1, 1, logp.size(1)).to(at::kBool);
    // One host copy per batch: [nll sum, token count].
    at::Tensor sums = at::stack({-(logp.to(at::kDouble) * in_answer.to(at::kDouble)).sum(),
                                 in_answer.sum().to(at::kDouble)}).to(at::kCPU);
    total.nll_sum += sums[0].item<double>();
    total.tokens += static_cast<int64_t>(sums[1].item<double>());
    seqs.clear();
    prompt_lens.clear();
  };
  std::vector<size_t> lengths;
  for (size_t i = 0; i < prompts.size(); ++i) lengths.push_back(prompts[i].size() + continuations[i].size());
  for (size_t i : shortest_first(lengths)) {
    if (continuations[i].empty() || prompts[i].empty()) continue;
    std::vector<int32_t> s = prompts[i];
    s.insert(s.end(), continuations[i].begin(), continuations[i].end());
    seqs.push_back(std::move(s));
    prompt_lens.push_back(static_cast<int64_t>(prompts[i].size()));
    if (static_cast<int64_t>(seqs.size()) == batch_size) flush();
  }
  flush();
  return total;
}

}  // namespace tlm
