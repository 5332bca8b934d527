#include "engine/generate/decode_batch.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "engine/common/error.h"
#include "engine/model/llama_model.h"

namespace tlm {

DecodeBatch::DecodeBatch(const LlamaModel& model, std::vector<int32_t> stop_ids)
    : model_(model), stop_ids_(std::move(stop_ids)) {}

DecodeEvent DecodeBatch::choose(Row& row, int64_t token) const {
  DecodeEvent e;
  e.id = row.id;
  const auto tok = static_cast<int32_t>(token);
  if (std::find(stop_ids_.begin(), stop_ids_.end(), tok) != stop_ids_.end()) {
    e.finished = e.stopped = true;
    return e;
  }
  e.token = tok;
  row.last = token;
  e.finished = --row.remaining == 0;
  return e;
}

DecodeEvent DecodeBatch::join(uint64_t id, const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                              const SamplingOptions& sampling) {
  TLM_CHECK(!prompt.empty(), "DecodeBatch::join: empty prompt");
  TLM_CHECK(max_new_tokens > 0, "DecodeBatch::join: max_new_tokens must be positive");
  c10::InferenceMode inference;
  const auto T = static_cast<int64_t>(prompt.size());
  KvCache own = model_.make_cache(1, T + max_new_tokens);
  at::Tensor ids = at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), at::kLong).view({1, T});
  at::Tensor last = model_.forward_hidden(ids.to(model_.device()), at::Tensor(), &own).select(1, T - 1);
  Row row{id, max_new_tokens, Sampler(sampling, model_.device()), sampling.temperature == 0.0, 0};
  const int64_t first = row.sampler.next(model_.logits_of(last)).to(at::kCPU).item<int64_t>();
  DecodeEvent e = choose(row, first);
  if (e.finished) return e;
  if (rows_.empty()) {
    cache_ = std::move(own);
  } else {
    int64_t remaining = row.remaining;
    for (const Row& r : rows_) remaining = std::max(remaining, r.remaining);
    cache_ = concat_caches(cache_, own, std::max(cache_.length, own.length) + remaining);
  }
  rows_.push_back(std::move(row));
  return e;
}

std::vector<DecodeEvent> DecodeBatch::step() {
  std::vector<DecodeEvent> events;
  if (rows_.empty()) return events;
  c10::InferenceMode inference;
  const auto b = static_cast<int64_t>(rows_.size());
  std::vector<int64_t> feed;
  for (const Row& r : rows_) feed.push_back(r.last);
  at::Tensor ids = at::tensor(feed, at::kLong).view({b, 1}).to(model_.device());
  at::Tensor logits = model_.logits_of(model_.forward_hidden(ids, at::Tensor(), &cache_).select(1, 0));  // [b, V]
  // Greedy rows in one argmax and one host copy; sampled rows each from their own generator.
  const at::Tensor greedy = logits.argmax(-1).to(at::kCPU);
  auto acc = greedy.accessor<int64_t, 1>();
  std::vector<size_t> running;
  for (size_t i = 0; i < rows_.size(); ++i) {
    Row& row = rows_[i];
    const int64_t tok = row.greedy ? acc[static_cast<int64_t>(i)]
                                   : row.sampler.next(logits.narrow(0, static_cast<int64_t>(i), 1)).to(at::kCPU)
                                         .item<int64_t>();
    events.push_back(choose(row, tok));
    if (!events.back().finished) running.push_back(i);
  }
  if (running.size() < rows_.size()) keep(running);
  return events;
}

std::vector<uint64_t> DecodeBatch::ids() const {
  std::vector<uint64_t> out;
  for (const Row& r : rows_) out.push_back(r.id);
  return out;
}

void DecodeBatch::remove(uint64_t id) {
  std::vector<size_t> kept;
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].id != id) kept.push_back(i);
  if (kept.size() < rows_.size()) keep(kept);
}

void DecodeBatch::keep(const std::vector<size_t>& rows) {
  c10::InferenceMode inference;
  std::vector<Row> kept;
  std::vector<int64_t> index;
  for (size_t i : rows) {
    kept.push_back(std::move(rows_[i]));
    index.push_back(static_cast<int64_t>(i));
  }
  rows_ = std::move(kept);
  if (rows_.empty()) cache_ = KvCache{};
  else cache_.keep_rows(at::tensor(index, at::kLong).to(model_.device()));
}

}  // namespace tlm
