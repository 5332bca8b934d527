#include "engine/learn/sytta_objective.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/vocab_parallel_rows.h"
#include "engine/common/error.h"
#include "engine/model/llama_model.h"

namespace tlm {

SyttaObjective::SyttaObjective(const SyttaOptions& options) : options_(options) {
  TLM_CHECK(options.entropy_weight >= 0.0 && options.kl_weight >= 0.0,
            "sytta: objective.entropy_weight and objective.kl_weight must be >= 0, got ", options.entropy_weight,
            " and ", options.kl_weight);
}

SampleTerms SyttaObjective::terms(const LlamaModel& model, const ObjectiveBatch& batch) {
  const TokenBatch& tb = batch.tokens;
  const int64_t B = tb.ids.size(0), T = tb.ids.size(1);
  TLM_CHECK(static_cast<int64_t>(batch.scored_from.size()) == B,
            "sytta: needs the generated answer's positions (objective.positions generated)");
  const at::Tensor hidden = model.forward_hidden(tb.ids, tb.attention_mask());
  // Prompt NLL: targets t + 1 < prompt length, i.e. positions t < scored_from.
  const at::Tensor ll = model.log_likelihoods_of(hidden, tb.ids, tb.attention_mask());  // [B, T-1]
  const at::Tensor from = at::tensor(batch.scored_from, at::kLong).to(ll.device()).unsqueeze(1);
  const at::Tensor in_prompt = (at::arange(T - 1, from.options()).unsqueeze(0) < from).to(at::kFloat);
  const at::Tensor nll = -(ll * in_prompt).sum(1) / in_prompt.sum(1).clamp_min(1.0);

  const at::Tensor positions = scored_positions(batch);
  const ScoredRows rows = scored_rows(hidden, positions);
  const at::Tensor z = model.shard_logits_of(rows.rows);
  const at::Tensor entropy = per_sample_mean(vocab_parallel_entropy_of_logits(z, model.tp()), rows.sample, B);
  at::Tensor kl = at::zeros_like(entropy);
  if (options_.kl_weight > 0.0) {
    TLM_CHECK(static_cast<bool>(batch.frozen_hidden), "sytta: the trust region needs the frozen base's forward");
    at::Tensor base_logits;
    {
      at::NoGradGuard no_grad;
      base_logits = model.shard_logits_of(scored_rows(batch.frozen_hidden(), positions).rows);
    }
    kl = per_sample_mean(vocab_parallel_kl(z, base_logits, model.tp()), rows.sample, B);
  }
  SampleTerms t;
  t.value = nll + options_.entropy_weight * entropy + options_.kl_weight * kl;
  t.weight = at::ones_like(entropy).detach();
  t.selected = at::ones_like(entropy, at::kBool);
  t.ce = t.current_ce = nll.detach();
  t.extra = {{"prompt_nll", nll.detach()}, {"entropy", entropy.detach()}, {"reverse_kl", kl.detach()}};
  return t;
}

nlohmann::json SyttaObjective::spec() const {
  return {{"method", "SyTTA-style"}, {"positions", "generated"}, {"generated_tokens", options_.generated_tokens},
          {"entropy_weight", options_.entropy_weight}, {"kl_weight", options_.kl_weight},
          {"divergence", "reverse_kl"}};
}

}  // namespace tlm
