// Continuous batching for a server: requests join a batch that is already decoding after a
// prefill of their own, and leave it the step they finish (or are cancelled), so one long
// answer never holds the others and a new request never waits for a batch to drain. Each row
// samples from its own seeded generator, so a row's tokens are the ones generate() gives its
// prompt alone with the same options (rows differ only in the floating-point order of
// batched products; the tests check greedy answers equal).
// Rows run under the model's adapter state at each call: the live adapter, or per-row
// adapters a server sets for the batch's rows (engine/serve/serve_engine.h). Runs in
// inference mode.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/generate/sampler.h"
#include "engine/model/kv_cache.h"

namespace tlm {

class LlamaModel;

// What a row did in one step: `token` >= 0 is a new token (never a stop token); `finished`
// ends the row (`stopped`: by a stop token, which is not emitted; else max_new_tokens).
struct DecodeEvent {
  uint64_t id = 0;
  int32_t token = -1;
  bool finished = false;
  bool stopped = false;
};

class DecodeBatch {
 public:
  DecodeBatch(const LlamaModel& model, std::vector<int32_t> stop_ids);

  // Prefills `prompt` alone, chooses its first token and, unless that ends it, adds the row.
  DecodeEvent join(uint64_t id, const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                   const SamplingOptions& sampling);
  // One decode step of every row: an event per row, in row order; finished rows leave.
  std::vector<DecodeEvent> step();
  // Drops a row (a cancelled request); no-op for an id not in the batch.
  void remove(uint64_t id);

  size_t size() const { return rows_.size(); }
  // The rows' ids in batch order (the order of step()'s input rows and events).
  std::vector<uint64_t> ids() const;
  bool empty() const { return rows_.empty(); }
  int64_t cache_slots() const { return rows_.empty() ? 0 : cache_.capacity(); }

 private:
  struct Row {
    uint64_t id;
    int64_t remaining;  // tokens it may still emit
    Sampler sampler;
    bool greedy;
    int64_t last;       // the token the next step feeds
  };
  DecodeEvent choose(Row& row, int64_t token) const;
  void keep(const std::vector<size_t>& rows);

  const LlamaModel& model_;
  std::vector<int32_t> stop_ids_;
  KvCache cache_;
  std::vector<Row> rows_;
};

}  // namespace tlm
