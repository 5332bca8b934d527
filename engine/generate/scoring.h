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

struct ContinuationNll {
  double nll_sum = 0.0;  // over every continuation token
  int64_t tokens = 0;
  double per_token() const { return tokens ? nll_sum / static_cast<double>(tokens) : 0.0; }
};

// Teacher-forced NLL of `continuations[i]` after `prompts[i]` (the answer NLL metric): only
// the continuation's tokens count. Pairs with an empty continuation contribute nothing.
ContinuationNll continuation_nll(const LlamaModel& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const std::vector<std::vector<int32_t>>& continuations,
                                 int64_t batch_size, int32_t pad_id);

}  // namespace tlm
