#include "engine/generate/scoring.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "engine/common/error.h"
#include "engine/generate/token_batch.h"
#include "engine/model/llama_model.h"

namespace tlm {

std::vector<double> mean_token_nll(const LlamaModel& model,
                                   const std::vector<std::vector<int32_t>>& sequences,
                                   int64_t batch_size, int32_t pad_id) {
  c10::InferenceMode inference;
  TLM_CHECK(batch_size > 0, "batch size must be positive");
  std::vector<double> out;
  out.reserve(sequences.size());
  for (size_t start = 0; start < sequences.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(sequences.size(), start + static_cast<size_t>(batch_size));
    std::vector<std::vector<int32_t>> chunk(sequences.begin() + static_cast<long>(start),
                                            sequences.begin() + static_cast<long>(end));
    for (const auto& s : chunk)
      TLM_CHECK(s.size() >= 2, "mean_token_nll: a sequence of ", s.size(),
                " token(s) has no next-token target");
    TokenBatch batch = right_padded_batch(chunk, pad_id);
    at::Tensor logp = model.token_log_likelihoods(batch.ids, batch.mask);  // [b, T-1]
    at::Tensor counts = batch.mask.sum(1) - 1;                             // [b]
    at::Tensor ce = (-logp.sum(1).to(at::kDouble) / counts.to(at::kDouble)).contiguous();
    auto acc = ce.accessor<double, 1>();
    for (int64_t i = 0; i < ce.size(0); ++i) out.push_back(acc[i]);
  }
  return out;
}

}  // namespace tlm
