#include "engine/learn/tlm_objective.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "engine/generate/token_batch.h"
#include "engine/model/llama_model.h"

namespace tlm {

TlmLoss tlm_loss(const at::Tensor& ce, const at::Tensor& selection_ce,
                 const TlmObjectiveOptions& options, double global_selected) {
  TlmLoss out;
  at::Tensor ce_detached = selection_ce.defined() ? selection_ce.detach().to(ce.scalar_type()) : ce.detach();
  at::Tensor value = options.perplexity_loss ? ce.exp() : ce;
  if (!options.sample_selection) {
    out.mask = at::ones_like(ce_detached, at::kBool);
    out.coeff = at::ones_like(ce_detached);
  } else {
    out.mask = ce_detached > options.threshold;
    out.coeff = options.lambda * (ce_detached - options.threshold).exp();
  }
  const double selected = global_selected >= 0.0 ? global_selected
                                                 : out.mask.sum().item<double>();
  out.loss = (value * out.coeff * out.mask.to(value.scalar_type())).sum() / std::max(1.0, selected);
  return out;
}

at::Tensor per_sample_ce(const LlamaModel& model, const TokenBatch& batch) {
  return per_sample_ce_of(model, model.forward_hidden(batch.ids, batch.attention_mask()), batch);
}

at::Tensor per_sample_ce_of(const LlamaModel& model, const at::Tensor& hidden, const TokenBatch& batch) {
  at::Tensor logp = model.log_likelihoods_of(hidden, batch.ids, batch.attention_mask());  // [B, T-1]
  at::Tensor counts = (batch.mask.sum(1) - 1).to(at::kFloat);                           // [B]
  return -logp.sum(1) / counts;
}

SampleTerms TlmObjective::terms(const LlamaModel& model, const ObjectiveBatch& batch) {
  at::Tensor ce = per_sample_ce(model, batch.tokens);  // [b]
  // Offline: the adapter-off ce selects and weights (kept in fp64 for the record).
  const at::Tensor selection = batch.selection_ce.empty()
                                   ? at::Tensor()
                                   : at::tensor(batch.selection_ce, at::kDouble).to(ce.device());
  const TlmLoss probe = tlm_loss(ce.detach(), selection.defined() ? selection.to(at::kFloat) : at::Tensor(),
                                 options_, /*global_selected=*/1.0);
  SampleTerms t;
  t.value = options_.perplexity_loss ? ce.exp() : ce;
  t.weight = probe.coeff;
  t.selected = probe.mask;
  t.current_ce = ce.detach();
  t.ce = selection.defined() ? selection : t.current_ce;
  return t;
}

nlohmann::json TlmObjective::spec() const {
  return {{"method", "TLM"}, {"threshold", options_.threshold}, {"lambda", options_.lambda},
          {"sample_selection", options_.sample_selection}, {"perplexity_loss", options_.perplexity_loss}};
}

}  // namespace tlm
