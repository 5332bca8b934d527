// Test probe: an objective's loss and its gradients with respect to the LoRA tensors, for the
// Python tests that check each objective against a reference written in torch.
//   objective_probe MODEL ADAPTER IN.json OUT.json
// MODEL: an HF directory (config + safetensors); ADAPTER: a PEFT adapter directory (the
// starting LoRA); IN = {"method": "tent" | "eata" | "come" | "sytta" | "tlm", "options": {...}, "batches": [[[ids]...]...],
// "scored_from": [[...]...], "scored_to": [[...]...] (optional, per batch)}. Every batch but the
// last only updates the objective's state (EATA's moving average, as after a step that kept
// the adapter); the last gives the loss = sum w m v / max(1, sum m) and, after backward, the
// gradient of every LoRA tensor. OUT = {"loss", "value", "weight", "selected", "extra": {...},
// "grads": {"<module>.lora_A": [...flat...], ...}, "state": {...flat...}}.
#include <fstream>
#include <iostream>
#include <memory>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "engine/common/error.h"
#include "engine/generate/token_batch.h"
#include "engine/learn/lora.h"
#include "engine/learn/methods.h"
#include "engine/learn/peft_adapter.h"
#include "engine/model/llama_model.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_source.h"

namespace {

using nlohmann::json;

std::vector<double> flat(const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kCPU, at::kDouble).contiguous().view({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

tlm::MethodSpec spec_of(const json& in) {
  tlm::MethodSpec spec;
  spec.name = in.at("method").get<std::string>();
  const json o = in.value("options", json::object());
  spec.tlm.threshold = o.value("threshold", spec.tlm.threshold);
  spec.tlm.lambda = o.value("lambda", spec.tlm.lambda);
  spec.entropy.positions = tlm::parse_scored_positions(o.value("positions", std::string("prompt")));
  spec.eata.entropy_margin = o.value("entropy_margin", spec.eata.entropy_margin);
  spec.eata.redundancy_margin = o.value("redundancy_margin", spec.eata.redundancy_margin);
  spec.eata.moving_average = o.value("moving_average", spec.eata.moving_average);
  spec.come_base = o.value("come_base", spec.come_base);
  spec.entropy.uncertainty_mass = o.value("uncertainty_mass", 0.0);
  spec.sytta.entropy_weight = o.value("entropy_weight", spec.sytta.entropy_weight);
  spec.sytta.kl_weight = o.value("kl_weight", spec.sytta.kl_weight);
  return spec;
}

std::vector<int64_t> bounds(const json& in, const char* key, size_t batch) {
  if (!in.contains(key)) return {};
  return in.at(key).at(batch).get<std::vector<int64_t>>();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    TLM_CHECK(argc == 5, "usage: objective_probe MODEL ADAPTER IN.json OUT.json");
    const std::string model_dir = argv[1];
    const tlm::ModelConfig config = tlm::ModelConfig::from_hf_json(model_dir + "/config.json");
    auto weights = tlm::open_safetensors_weights(model_dir);
    tlm::LlamaModel model(config, *weights, tlm::make_single_process_communicator(), at::kFloat);
    const tlm::PeftAdapter init = tlm::load_peft_adapter(argv[2]);
    tlm::LoraAdapters lora(model, init.config);
    lora.load_full_state(init.state, argv[2]);
    std::ifstream in_file(argv[3]);
    const json in = json::parse(in_file);
    std::shared_ptr<tlm::Objective> objective = tlm::make_objective(spec_of(in), model);

    const json& batches = in.at("batches");
    json out;
    for (size_t b = 0; b < batches.size(); ++b) {
      const auto seqs = batches[b].get<std::vector<std::vector<int32_t>>>();
      const tlm::TokenBatch tokens = tlm::right_padded_batch(seqs, 0, model.device());
      tlm::ObjectiveBatch batch{tokens, {}, bounds(in, "scored_from", b), bounds(in, "scored_to", b), {}};
      batch.frozen_hidden = [&] {  // the base: adapters off, as the learner does it
        at::NoGradGuard no_grad;
        lora.set_enabled(false);
        at::Tensor h = model.forward_hidden(tokens.ids, tokens.attention_mask());
        lora.set_enabled(true);
        return h;
      };
      const bool last = b + 1 == batches.size();
      at::AutoGradMode grad(last);
      tlm::SampleTerms t = objective->terms(model, batch);
      if (!last) {
        objective->after_step(&t, /*updated=*/true, tlm::make_single_process_communicator());
        continue;
      }
      const double selected = t.selected.sum().item<double>();
      at::Tensor loss = (t.value * t.weight * t.selected.to(at::kFloat)).sum() / std::max(1.0, selected);
      loss.backward();
      out["loss"] = loss.item<double>();
      out["value"] = flat(t.value);
      out["weight"] = flat(t.weight);
      out["selected"] = flat(t.selected);
      for (const auto& [name, v] : t.extra) out["extra"][name] = flat(v);
      const std::vector<at::Tensor> params = lora.parameters();
      const std::vector<std::string> names = lora.parameter_names();
      for (size_t i = 0; i < params.size(); ++i)
        out["grads"][names[i]] = params[i].grad().defined() ? flat(params[i].grad()) : flat(at::zeros_like(params[i]));
    }
    for (const auto& [name, t] : objective->state()) out["state"][name] = flat(t);
    std::ofstream(argv[4]) << out.dump();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "objective_probe: " << e.what() << "\n";
    return 1;
  }
}
