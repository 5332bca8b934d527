#include "engine/learn/entropy_objectives.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/shard.h"
#include "dist/vocab_parallel.h"
#include "dist/vocab_parallel_rows.h"
#include "engine/common/error.h"
#include "engine/learn/tlm_objective.h"
#include "engine/model/llama_model.h"

namespace tlm {
namespace {

// Per-sample mean entropy over the scored positions, and what the record needs, from one
// forward. `positions` [B, T] bool.
struct EntropyForward {
  at::Tensor hidden;     // [B, T, H]
  at::Tensor positions;  // [B, T] bool
  at::Tensor entropy;    // [B] fp32, differentiable
  at::Tensor ce;         // [B] detached
};

EntropyForward entropy_forward(const LlamaModel& model, const ObjectiveBatch& batch, const EntropyOptions& o) {
  EntropyForward f;
  const TokenBatch& tb = batch.tokens;
  f.hidden = model.forward_hidden(tb.ids, tb.attention_mask());
  f.positions = scored_positions(batch);
  if (o.measure == EntropyMeasure::Opinion) {
    const ScoredRows s = scored_rows(f.hidden, f.positions);
    const double k = o.uncertainty_mass > 0.0 ? o.uncertainty_mass : static_cast<double>(model.config().vocab_size);
    const at::Tensor e = vocab_parallel_opinion_entropy(model.shard_logits_of(s.rows), model.tp(), k);
    f.entropy = per_sample_mean(e, s.sample, tb.ids.size(0));
  } else {
    const at::Tensor per_position = model.entropies_of(f.hidden, tb.attention_mask());  // [B, T]
    const at::Tensor counted = f.positions.to(at::kFloat);
    f.entropy = (per_position * counted).sum(1) / counted.sum(1).clamp_min(1.0);
  }
  {
    at::NoGradGuard no_grad;
    f.ce = per_sample_ce_of(model, f.hidden.detach(), tb);
  }
  return f;
}

// The spec of a Tent-type (`base` "Tent") or EATA-type method: COME when E is the opinion's.
nlohmann::json entropy_spec(const EntropyOptions& o, const char* base) {
  nlohmann::json j = {{"positions", scored_positions_name(o.positions)}};
  if (o.positions == ScoredPositions::Generated) j["generated_tokens"] = o.generated_tokens;
  if (o.measure == EntropyMeasure::Opinion) {
    j["method"] = "COME";
    j["come_base"] = base;
    j["uncertainty_mass"] = o.uncertainty_mass;  // 0: the vocabulary size
  } else {
    j["method"] = base;
  }
  return j;
}

}  // namespace

ScoredPositions parse_scored_positions(const std::string& name) {
  if (name == "prompt") return ScoredPositions::Prompt;
  if (name == "generated") return ScoredPositions::Generated;
  TLM_FAIL("objective.positions must be prompt or generated, got '", name, "'");
}

const char* scored_positions_name(ScoredPositions positions) {
  return positions == ScoredPositions::Prompt ? "prompt" : "generated";
}

SampleTerms TentObjective::terms(const LlamaModel& model, const ObjectiveBatch& batch) {
  const EntropyForward f = entropy_forward(model, batch, options_);
  SampleTerms t;
  t.value = f.entropy;
  t.weight = at::ones_like(f.ce);
  t.selected = at::ones_like(f.ce, at::kBool);
  t.ce = t.current_ce = f.ce;
  t.extra = {{"entropy", f.entropy.detach()}};
  return t;
}

nlohmann::json TentObjective::spec() const {
  return entropy_spec(options_, "Tent");
}

EataObjective::EataObjective(const EataOptions& options, CommunicatorPtr tp, int64_t vocab_size,
                             c10::Device device)
    : options_(options), tp_(std::move(tp)), vocab_size_(vocab_size), device_(device),
      e0_(options.entropy_margin * std::log(static_cast<double>(vocab_size))) {
  TLM_CHECK(options.moving_average >= 0.0 && options.moving_average < 1.0,
            "objective.moving_average must be in [0, 1), got ", options.moving_average);
}

SampleTerms EataObjective::terms(const LlamaModel& model, const ObjectiveBatch& batch) {
  const EntropyForward f = entropy_forward(model, batch, options_.entropy);
  at::NoGradGuard no_grad;
  const at::Tensor entropy = f.entropy.detach();
  const at::Tensor q = model.mean_probabilities_of(f.hidden.detach(), f.positions);  // [b, V/tp]
  at::Tensor keep = entropy < e0_;
  at::Tensor cos = at::full_like(entropy, -1.0);  // -1: no average yet
  if (average_.defined()) {
    // cos(q, m) over the full vocabulary from this rank's shards: sum the dot products and
    // the squared norms over TP.
    at::Tensor sums = at::cat({(q * average_).sum(1), q.pow(2).sum(1), average_.pow(2).sum().view({1})}).contiguous();
    tp_->all_reduce(sums, ReduceOp::Sum);
    const int64_t b = q.size(0);
    cos = sums.narrow(0, 0, b) / (sums.narrow(0, b, b).sqrt() * sums.narrow(0, 2 * b, 1).sqrt()).clamp_min(1e-8);
    keep = keep & (cos < options_.redundancy_margin);
  }
  SampleTerms t;
  t.value = f.entropy;
  t.weight = (e0_ - entropy).exp();
  t.selected = keep;
  t.ce = t.current_ce = f.ce;
  t.extra = {{"entropy", entropy}, {"redundancy_cos", cos}};
  t.mean_probs = q;
  return t;
}

void EataObjective::after_step(const SampleTerms* terms, bool, const CommunicatorPtr& dp) {
  // The kept samples' mean distributions of every replica: their sum and count over DP.
  const int64_t local_vocab = valid_rows(vocab_shard(vocab_size_, tp_->rank(), tp_->size()), vocab_size_);
  at::Tensor sums;
  if (terms) {
    const at::Tensor kept = terms->selected.to(at::kFloat).unsqueeze(1);  // [b, 1]
    sums = at::cat({(terms->mean_probs * kept).sum(0), kept.sum().view({1})});
  } else {
    sums = at::zeros({local_vocab + 1}, at::TensorOptions().dtype(at::kFloat).device(device_));
  }
  sums = sums.contiguous();
  dp->all_reduce(sums, ReduceOp::Sum);
  const double count = sums[local_vocab].item<double>();
  if (count == 0.0) return;
  const at::Tensor mean = sums.narrow(0, 0, local_vocab) / count;
  average_ = average_.defined() ? average_ * options_.moving_average + mean * (1.0 - options_.moving_average)
                                : mean.clone();
}

std::map<std::string, at::Tensor> EataObjective::state() const {
  std::map<std::string, at::Tensor> out;
  if (!average_.defined()) return out;
  // Shards of a padded vocabulary are gathered at their padded size, then cut to [V].
  const int64_t padded = vocab_shard(vocab_size_, tp_->rank(), tp_->size()).size();
  out["eata.moving_average"] = tp_->all_gather(pad_columns(average_, padded).contiguous(), 0)
                                   .narrow(0, 0, vocab_size_).contiguous();
  return out;
}

void EataObjective::load_state(const std::map<std::string, at::Tensor>& state, const std::string& source) {
  auto it = state.find("eata.moving_average");
  if (it == state.end()) {
    average_ = at::Tensor();
    return;
  }
  TLM_CHECK(it->second.dim() == 1 && it->second.size(0) == vocab_size_, source, ": eata.moving_average has shape ",
            it->second.sizes(), ", the model's vocabulary needs [", vocab_size_, "]");
  const ShardRange r = vocab_shard(vocab_size_, tp_->rank(), tp_->size());
  average_ = it->second.narrow(0, r.begin, valid_rows(r, vocab_size_)).to(device_, at::kFloat).contiguous();
}

nlohmann::json EataObjective::spec() const {
  nlohmann::json j = entropy_spec(options_.entropy, "EATA");
  j["entropy_margin"] = options_.entropy_margin;
  j["redundancy_margin"] = options_.redundancy_margin;
  j["moving_average"] = options_.moving_average;
  return j;
}

}  // namespace tlm
