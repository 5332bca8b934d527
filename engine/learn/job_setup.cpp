#include "engine/learn/job_setup.h"

#include <fstream>
#include <set>

#include <ATen/ATen.h>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/learn/fisher_regulariser.h"
#include "engine/learn/guards.h"
#include "engine/learn/job_checkpoints.h"
#include "engine/learn/job_steps.h"
#include "engine/learn/norm_affine.h"
#include "engine/learn/peft_adapter.h"
#include "engine/learn/test_time_learner.h"
#include "engine/model/llama_model.h"

namespace tlm {

nlohmann::json method_json(const AdaptConfig& config, const Objective& objective, const TrainableSet& trainable) {
  nlohmann::json j = {{"mode", config.mode == AdaptMode::Online ? "online" : "offline"},
                      {"lr", config.learning_rate}, {"schedule", config.schedule_name()},
                      {"warmup_ratio", config.warmup()}, {"stream_batch", config.stream_batch},
                      {"train_batch_size", config.train_batch_size},
                      {"fresh_optimizer_per_chunk", config.fresh_optimizer_per_chunk},
                      {"skip_unselected_steps", config.step.skip_unselected},
                      {"max_grad_norm", config.step.max_grad_norm},
                      {"max_new_tokens", config.generation.max_new_tokens}};
  j.update(trainable.describe());  // "trainable" and its settings (LoRA rank, alpha, targets)
  j.update(objective.spec());  // "method" and the objective's hyperparameters
  return j;
}

std::string objective_summary(const nlohmann::json& spec) {
  std::string out;
  for (const auto& [key, value] : spec.items()) {
    if (key == "method") continue;
    out += str_cat(out.empty() ? "" : ", ", key, " ", value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::shared_ptr<const FisherRegulariser> make_fisher(const AdaptConfig& config, const PromptEncoder& encoder,
                                                     const ProcessGrid& grid, const LlamaModel& model,
                                                     TrainableSet& trainable) {
  const FisherOptions& f = config.method.fisher;
  if (!f.enabled()) return nullptr;
  AdaptConfig reference;
  reference.data = f.data;
  reference.max_samples = f.samples;
  std::vector<std::vector<int32_t>> prompts;
  for (Sample& s : load_job_samples(reference, encoder, grid).samples) prompts.push_back(std::move(s.ids));
  auto fisher = std::make_shared<FisherRegulariser>(model, trainable, prompts, f.alpha);
  double total = 0;
  for (const at::Tensor& t : fisher->fisher()) total += t.sum().item<double>();
  log_info(str_cat("EATA Fisher regulariser: F from ", prompts.size(), " prompts of ", f.data, " (sum of this rank's F ",
                   total, "), alpha ", f.alpha));
  return fisher;
}

std::unique_ptr<TrainableSet> make_trainable(LlamaModel& model, const AdaptConfig& config) {
  if (config.trainable == TrainableKind::NormAffine) {
    auto norms = std::make_unique<NormAffine>(model, config.norm_targets);
    if (!config.init_adapter.empty()) {
      PeftAdapter init = load_peft_adapter(config.init_adapter);
      const std::set<std::string> have(init.norm_targets.begin(), init.norm_targets.end());
      TLM_CHECK(init.kind == TrainableKind::NormAffine && have == std::set<std::string>(config.norm_targets.begin(),
                                                                                         config.norm_targets.end()),
                config.init_adapter, ": not an LN-tuning adapter of the norms ",
                nlohmann::json(config.norm_targets).dump(), " this job trains");
      norms->load_full_state(init.state, config.init_adapter);
      log_info("norm weights initialised from " + config.init_adapter);
    }
    return norms;
  }
  auto lora = std::make_unique<LoraAdapters>(model, config.lora);
  if (!config.init_adapter.empty()) {
    PeftAdapter init = load_peft_adapter(config.init_adapter);
    TLM_CHECK(init.kind == TrainableKind::Lora && init.config.rank == config.lora.rank &&
                  init.config.alpha == config.lora.alpha,
              config.init_adapter, ": adapter has ", init.kind == TrainableKind::Lora ? "" : "no LoRA, ", "r=",
              init.config.rank, " alpha=", init.config.alpha, " but the run is configured with r=", config.lora.rank,
              " alpha=", config.lora.alpha);
    lora->load_full_state(init.state, config.init_adapter);
    log_info("adapter initialised from " + config.init_adapter);
  }
  return lora;
}

std::string trainable_summary(const TrainableSet& set) {
  const nlohmann::json d = set.describe();
  const bool lora = set.kind() == TrainableKind::Lora;
  std::string targets;
  for (const auto& t : d.at(lora ? "lora_targets" : "norm_targets")) targets += (targets.empty() ? "" : ",") + t.get<std::string>();
  if (!lora) return "norm-affine on " + targets;
  return str_cat("lora r=", d.at("lora_rank").get<int64_t>(), " alpha=", d.at("lora_alpha").get<double>(), " on ", targets);
}

int64_t steps_for(size_t n, int64_t batch) {
  return static_cast<int64_t>((n + static_cast<size_t>(batch) - 1) / static_cast<size_t>(batch));
}


std::unique_ptr<CollapseGuards> make_guards(const AdaptConfig& config, const PromptEncoder& encoder,
                                            const ProcessGrid& grid, LlamaModel& model,
                                            TestTimeLearner& learner, int32_t pad) {
  const GuardOptions& g = config.guards;
  if (!g.any()) return nullptr;
  std::vector<std::vector<int32_t>> probe;
  if (g.probe_every > 0) {
    TLM_CHECK(!g.probe_data.empty(), "guard.probe_every is set: give the probe set (--guard-data or guard.probe_data)");
    AdaptConfig probe_config;
    probe_config.data = g.probe_data;
    probe_config.max_samples = g.probe_samples;
    for (Sample& s : load_job_samples(probe_config, encoder, grid).samples) probe.push_back(std::move(s.ids));
  }
  auto guards = std::make_unique<CollapseGuards>(g, model, learner.trainable(), learner.optimizer(), std::move(probe), pad,
                                                 config.score_batch, config.output_dir + "/guards.jsonl",
                                                 grid.is_root());
  if (g.probe_every > 0)
    log_info(str_cat("guard probe: ", g.probe_data, " (", g.probe_samples, " prompts at most), base NLL ",
                     fixed(guards->probe_base_nll(), 4), ", rollback above ",
                     fixed(guards->probe_base_nll() * (1.0 + g.probe_tolerance), 4), " every ", g.probe_every, " steps"));
  return guards;
}

CheckpointIdentity job_identity(const LlamaModel& model, const std::string& model_path, const ProcessGrid& grid,
                                const nlohmann::json& method) {
  CheckpointIdentity identity;
  identity.engine_version = "tlm 0.1.0";
  identity.base_model_path = model_path;
  identity.base_config_hash = content_fingerprint(model.config().summary());
  identity.base_weights_hash = model.weights_fingerprint();
  identity.tp_at_save = grid.tp_size;
  identity.dp_at_save = grid.dp_size;
  identity.method_json = method.dump();
  return identity;
}

RestoredJob restore_job(const AdaptConfig& config, const CheckpointIdentity& identity,
                        const std::string& stream_identity, TestTimeLearner& learner, JobCheckpoints& checkpoints) {
  RestoredJob r;
  r.path = find_resume_checkpoint(config.resume, config.checkpoints.directory);
  const CheckpointState state = AdapterCheckpoint::load(r.path);
  apply_checkpoint(state, identity, stream_identity, learner.trainable(), learner.optimizer(), r.path,
                   config.resume_ignore_base);
  learner.set_steps(state.global_step);
  checkpoints.restore(state, r.path);
  std::map<std::string, at::Tensor> method_state;
  for (const auto& [name, t] : state.method_state) {
    if (name.rfind("guard.", 0) == 0) r.guard_state[name.substr(6)] = t;
    else method_state[name] = t;
  }
  learner.objective().load_state(method_state, r.path);
  r.stats = state.stats;
  r.steps = state.global_step;
  r.samples_consumed = state.samples_consumed;
  r.tp_at_save = state.identity.tp_at_save;
  r.scheduler = nlohmann::json::parse(state.scheduler_state, nullptr, false);
  return r;
}

std::unique_ptr<CollapseGuards> open_guards(const AdaptConfig& config, const PromptEncoder& encoder,
                                            const ProcessGrid& grid, LlamaModel& model, TestTimeLearner& learner,
                                            int32_t pad, const RestoredJob& restored) {
  const bool resumed = !restored.path.empty();
  // guards.jsonl's old lines, read before the guards reopen the file.
  const std::vector<std::string> old_events = resumed ? read_lines(config.output_dir + "/guards.jsonl")
                                                      : std::vector<std::string>{};
  std::unique_ptr<CollapseGuards> guards = make_guards(config, encoder, grid, model, learner, pad);
  if (guards && resumed) {
    guards->load_state(restored.guard_state, restored.stats, restored.path);
    guards->keep_events_until(old_events, restored.steps);
  } else if (!restored.guard_state.empty()) {
    log_warn(restored.path + ": saved with collapse guards, which this job does not run; their state is dropped");
  }
  return guards;
}

}  // namespace tlm
