// Input perplexity: the mean next-token negative log-likelihood of each sequence (its
// log-perplexity, the quantity TLM's sample selection thresholds), in inference mode.
#pragma once

#include <cstdint>
#include <vector>

namespace tlm {

class LlamaModel;

// ce[i] = -(1/(n_i - 1)) * sum_t log p(x_{t+1} | x_<=t) for sequence i of n_i >= 2 tokens.
// Sequences are scored `batch_size` at a time.
std::vector<double> mean_token_nll(const LlamaModel& model,
                                   const std::vector<std::vector<int32_t>>& sequences,
                                   int64_t batch_size, int32_t pad_id);

}  // namespace tlm
