#include "engine/learn/adapt_job.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>

#include "engine/common/log.h"

#include <ATen/ATen.h>

#include "checkpoints/adapter_checkpoint.h"
#include "dist/fault_injection.h"
#include "dist/gather_objects.h"
#include "dist/shard.h"
#include "engine/common/error.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/generate/scoring.h"
#include "engine/learn/lr_schedule.h"
#include "engine/learn/episodic_job.h"
#include "engine/learn/job_steps.h"
#include "engine/learn/memory_report.h"
#include "engine/learn/peft_adapter.h"
#include "engine/learn/run_outputs.h"
#include "engine/metrics/exact_match.h"
#include "engine/metrics/rouge.h"
#include "engine/model/llama_model.h"

namespace tlm {

std::string AdaptConfig::schedule_name() const {
  if (!lr_schedule.empty()) return lr_schedule;
  return mode == AdaptMode::Online ? "constant" : "cosine";
}

double AdaptConfig::warmup() const {
  if (warmup_ratio >= 0.0) return warmup_ratio;
  return mode == AdaptMode::Online ? 0.0 : 0.1;
}

namespace {


// Trains on samples[begin, end) in batches of train_batch_size. `k` counts the steps of the
// current schedule (its lr is schedule.lr(k)); `selection_ce` (offline) is indexed like samples.
// Returns false when the job was asked to stop (checked before every step, on every rank).
// The sequences a step trains on: the prompts, or (objectives that learn from the generated
// answer) each prompt followed by the first G tokens of its answer, with the positions
// [prompt length - 1, prompt length - 1 + G') whose distributions produced those tokens.
struct StepInputs {
  std::vector<std::vector<int32_t>> sequences;
  std::vector<int64_t> scored_from, scored_to;
};

StepInputs step_inputs(const AdaptConfig& config, const std::vector<Sample>& samples,
                       const std::vector<std::vector<int32_t>>& answer_ids, size_t begin, size_t end) {
  StepInputs in;
  in.sequences = ids_of(samples, begin, end);
  if (!config.method.needs_generated_tokens()) return in;
  const size_t g = static_cast<size_t>(config.method.entropy.generated_tokens);
  for (size_t i = begin; i < end; ++i) {
    std::vector<int32_t>& seq = in.sequences[i - begin];
    const int64_t prompt = static_cast<int64_t>(seq.size());
    const std::vector<int32_t>& answer = answer_ids[i];
    const size_t take = std::min(g, answer.size());
    seq.insert(seq.end(), answer.begin(), answer.begin() + static_cast<long>(take));
    in.scored_from.push_back(prompt - 1);
    in.scored_to.push_back(prompt - 1 + static_cast<int64_t>(take));
  }
  return in;
}

bool train_range(TestTimeLearner& learner, JobCheckpoints& checkpoints,
                 const AdaptConfig& config, const ProcessGrid& grid,
                 const LrSchedule& schedule, const std::vector<Sample>& samples, size_t begin, size_t end,
                 const std::vector<double>& selection_ce, const std::vector<std::vector<int32_t>>& answer_ids,
                 RunOutputs& outputs, CollapseGuards* guards, int64_t& samples_seen, int64_t& k) {
  const size_t bs = static_cast<size_t>(config.train_batch_size);
  for (size_t b = begin; b < end; b += bs, ++k) {
    const size_t e = std::min(end, b + bs);
    if (checkpoints.stop_agreed()) return false;
    const auto [lb, le] = replica_block(b, e, grid);
    std::vector<double> sel;
    if (!selection_ce.empty())
      sel.assign(selection_ce.begin() + static_cast<long>(lb), selection_ce.begin() + static_cast<long>(le));
    fault_injection_point(config.fault, grid.world_rank, learner.steps() + 1);
    const StepInputs in = step_inputs(config, samples, answer_ids, lb, le);
    StepRecord rec = learner.train_step(in.sequences, schedule.lr(k), sel, in.scored_from, in.scored_to);
    samples_seen += static_cast<int64_t>(e - b);
    outputs.write_step(rec, samples_seen);
    if (guards) guards->after_step(rec);
    const nlohmann::json scheduler = {{"kind", schedule_name(schedule.kind)}, {"base_lr", schedule.base_lr},
                                      {"total_steps", schedule.total_steps}, {"warmup_steps", schedule.warmup_steps},
                                      {"next_step", k + 1}};
    checkpoints.after_step(rec, samples_seen, scheduler.dump(), learner.trainable(), learner.optimizer());
  }
  return true;
}

// The method and its hyperparameters (summary.json "config", checkpoint "method").
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

// "threshold 3, lambda 0.1" from an objective's spec: its hyperparameters, for the log.
std::string objective_summary(const nlohmann::json& spec) {
  std::string out;
  for (const auto& [key, value] : spec.items()) {
    if (key == "method") continue;
    out += str_cat(out.empty() ? "" : ", ", key, " ", value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out;
}

// The lines of a text file; none when it does not exist.
std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// EATA's Fisher regulariser from the reference prompts, or null when off.
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

// LoRA with the job's settings (from --init-adapter when given), or the norm weights.
std::unique_ptr<TrainableSet> make_trainable(LlamaModel& model, const AdaptConfig& config) {
  if (config.trainable == TrainableKind::NormAffine) {
    auto norms = std::make_unique<NormAffine>(model, config.norm_targets);
    if (!config.init_adapter.empty()) {
      PeftAdapter init = load_peft_adapter(config.init_adapter);
      TLM_CHECK(init.kind == TrainableKind::NormAffine && init.norm_targets == config.norm_targets,
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

// "lora r=8 alpha=16 on q_proj,v_proj" or "norm-affine on input_layernorm,...", for the log.
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


// The job's collapse guards, or null when none is on; the probe set read and encoded here.
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

}  // namespace

nlohmann::json run_adaptation(LlamaModel& model, const PromptEncoder& encoder,
                              const AdaptConfig& config, const std::string& model_path,
                              const ProcessGrid& grid) {
  if (config.mode == AdaptMode::Episodic) return run_episodic(model, encoder, config, model_path, grid);
  const auto start = std::chrono::steady_clock::now();
  TLM_CHECK(config.stream_batch > 0 && config.train_batch_size > 0 && config.generation_batch > 0 &&
                config.score_batch > 0,
            "stream_batch, train_batch_size, generation_batch and score_batch must be positive");
  const JobSamples job = load_job_samples(config, encoder, grid);
  const std::vector<Sample>& samples = job.samples;
  const int32_t pad = encoder.tokenizer().pad_id().value_or(0);

  const MemoryMeter memory(grid.device);  // baseline: the loaded model, before the adapters
  // LibTorch seeds its default generators nondeterministically; seed them (as HF Trainer's
  // set_seed does: the CPU's and every GPU's) so LoRA dropout draws the same masks in every
  // run, and a resumed run can continue them from the checkpoint's generator state.
  at::manual_seed(config.lora.seed);
  const std::unique_ptr<TrainableSet> owned = make_trainable(model, config);
  TrainableSet& trainable = *owned;  // LoRA, or the norm weights (trainable: norm-affine)
  TestTimeLearner learner(model, trainable, make_objective(config.method, model), config.step, config.adamw, grid.dp,
                          grid.host_dp);
  std::shared_ptr<const FisherRegulariser> fisher = make_fisher(config, encoder, grid, model, trainable);
  learner.set_regulariser(fisher);  // estimated under the fresh trainables, before any resume
  const bool online = config.mode == AdaptMode::Online;
  TLM_CHECK(!config.method.needs_generated_tokens() || (online && config.generate),
            "objective.positions: generated needs an online job that generates its answers "
            "(mode online, generation.enabled true)");
  nlohmann::json method = method_json(config, learner.objective(), trainable);
  if (fisher) method.update(fisher->spec());
  CheckpointIdentity identity;
  identity.engine_version = "tlm 0.1.0";
  identity.base_model_path = model_path;
  identity.base_config_hash = content_fingerprint(model.config().summary());
  identity.tp_at_save = grid.tp_size;
  identity.dp_at_save = grid.dp_size;
  identity.method_json = method.dump();
  const std::string stream_identity = str_cat(config.data, " (", samples.size(), " prompts)");
  JobCheckpoints checkpoints(config.checkpoints, identity, stream_identity, grid, &learner.objective());
  const ScheduleKind kind = parse_schedule(config.schedule_name());
  int64_t samples_seen = 0;
  double generate_seconds = 0, train_seconds = 0;

  // Resume: the checkpoint's adapter, moments, counts and stream offset; the output files keep
  // the lines consistent with it (answers are written chunk by chunk before training).
  ResumePoint resume_point;
  nlohmann::json resumed_scheduler;
  std::map<std::string, at::Tensor> resumed_method_state, resumed_guard_state;
  std::map<std::string, std::vector<double>> resumed_stats;
  std::string resumed_from;
  if (!config.resume.empty()) {
    TLM_CHECK(online, "--resume: only online jobs resume so far (an offline job reruns from the start)");
    const std::string path = find_resume_checkpoint(config.resume, config.checkpoints.directory);
    const CheckpointState state = AdapterCheckpoint::load(path);
    apply_checkpoint(state, identity, stream_identity, trainable, learner.optimizer(), path, config.resume_ignore_base);
    learner.set_steps(state.global_step);
    checkpoints.restore(state, path);
    for (const auto& [name, t] : state.method_state) {
      if (name.rfind("guard.", 0) == 0) resumed_guard_state[name.substr(6)] = t;
      else resumed_method_state[name] = t;
    }
    resumed_stats = state.stats;
    learner.objective().load_state(resumed_method_state, path);
    resumed_from = path;
    resumed_scheduler = nlohmann::json::parse(state.scheduler_state, nullptr, false);
    samples_seen = state.samples_consumed;
    const int64_t chunk = config.stream_batch, n = static_cast<int64_t>(samples.size());
    resume_point.steps = state.global_step;
    resume_point.predictions = config.generate ? std::min(n, (samples_seen + chunk - 1) / chunk * chunk) : 0;
    log_info(str_cat("resumed from ", path, ": step ", state.global_step, ", ", samples_seen, " of ", n,
                     " prompts learned (saved at tp ", state.identity.tp_at_save, ", running at tp ", grid.tp_size, ")"));
  }
  RunOutputs outputs = config.resume.empty()
                           ? RunOutputs(config.output_dir, static_cast<int64_t>(samples.size()), grid.is_root())
                           : RunOutputs(config.output_dir, static_cast<int64_t>(samples.size()), grid.is_root(), resume_point);
  // A resumed job's guards.jsonl: the old lines, read before the guards reopen the file.
  const std::vector<std::string> old_events = resumed_from.empty() ? std::vector<std::string>{}
                                                                     : read_lines(config.output_dir + "/guards.jsonl");
  std::unique_ptr<CollapseGuards> guards = make_guards(config, encoder, grid, model, learner, job.pad);
  checkpoints.set_guards(guards.get());
  if (guards && !resumed_from.empty()) {
    guards->load_state(resumed_guard_state, resumed_stats, resumed_from);
    guards->keep_events_until(old_events, resume_point.steps);
  } else if (!resumed_guard_state.empty()) {
    log_warn(resumed_from + ": saved with collapse guards, which this job does not run; their state is dropped");
  }
  std::vector<std::string> predictions = outputs.kept_predictions();
  // Objectives that learn from the generated answers: their token ids, indexed like samples
  // (a resumed job gets the kept ones back from rank 0's predictions.jsonl).
  const bool keep_answer_ids = config.method.needs_generated_tokens();
  std::vector<std::vector<int32_t>> answer_ids(samples.size());
  if (keep_answer_ids) {
    std::vector<std::string> kept;
    for (const auto& ids : outputs.kept_prediction_ids()) kept.push_back(pack_ids(ids));
    const std::vector<std::string> all = all_gather_strings(kept, grid.host_world);  // rank 0's only
    for (size_t i = 0; i < all.size() && i < answer_ids.size(); ++i) answer_ids[i] = unpack_ids(all[i]);
  }
  const size_t offset = static_cast<size_t>(samples_seen);
  bool stopped = false;

  log_info(str_cat(online ? "online" : "offline", " ", learner.objective().spec().value("method", "?"), " on ",
                   samples.size(), " prompts from ", config.data, ": ", trainable_summary(trainable), ", lr ", config.learning_rate, " (", config.schedule_name(),
                   "), ", objective_summary(learner.objective().spec())));
  if (online) {
    const size_t chunk = static_cast<size_t>(config.stream_batch);
    const size_t bs = static_cast<size_t>(config.train_batch_size);
    LrSchedule schedule;
    int64_t k = 0;
    bool schedule_ready = false;
    for (size_t b = 0; b < samples.size() && !stopped; b += chunk) {
      const size_t e = std::min(samples.size(), b + chunk);
      if (e <= offset) continue;  // learned before the resume
      const size_t from = std::max(b, offset);
      if (config.generate && from == b) {
        auto t = std::chrono::steady_clock::now();
        answer(model, encoder, config, grid, samples, b, e, outputs, predictions,
               keep_answer_ids ? &answer_ids : nullptr);
        generate_seconds += seconds_since(t);
      }
      if (config.fresh_optimizer_per_chunk) {
        if (from == b && b > 0) learner.optimizer().reset();
        schedule = LrSchedule::make(kind, config.learning_rate, steps_for(e - b, config.train_batch_size), config.warmup());
        k = static_cast<int64_t>((from - b + bs - 1) / bs);
      } else if (!schedule_ready) {
        schedule = LrSchedule::make(kind, config.learning_rate, steps_for(samples.size(), config.train_batch_size),
                                    config.warmup());
        k = learner.steps();
        schedule_ready = true;
      }
      if (from > b && resumed_scheduler.is_object() && resumed_scheduler.contains("next_step")) {
        // Mid-chunk resume: the schedule rebuilt from the stream position must be the saved one.
        const nlohmann::json& r = resumed_scheduler;
        TLM_CHECK(r["next_step"].get<int64_t>() == k && r["total_steps"].get<int64_t>() == schedule.total_steps &&
                      r["base_lr"].get<double>() == schedule.base_lr,
                  config.resume, ": the checkpoint's schedule ", r.dump(), " does not match this job's at sample ",
                  from, " (step ", k, " of ", schedule.total_steps, ", lr ", schedule.base_lr, ")");
      }
      resumed_scheduler = nullptr;
      auto t = std::chrono::steady_clock::now();
      stopped = !train_range(learner, checkpoints, config, grid, schedule, samples, from, e, {}, answer_ids, outputs,
                             guards.get(), samples_seen, k);
      train_seconds += seconds_since(t);
      outputs.log_progress(samples_seen);
    }
  } else {
    trainable.set_enabled(false);
    auto t = std::chrono::steady_clock::now();
    const std::vector<double> base_ce = score_all(model, samples, config, grid, pad);
    trainable.set_enabled(true);
    const LrSchedule schedule = LrSchedule::make(kind, config.learning_rate,
                                                 steps_for(samples.size(), config.train_batch_size), config.warmup());
    // Progress in chunks of stream_batch so long offline runs report as they go.
    const size_t chunk = static_cast<size_t>(config.stream_batch * config.train_batch_size);
    int64_t k = 0;
    for (size_t b = 0; b < samples.size(); b += chunk) {
      const size_t e = std::min(samples.size(), b + chunk);
      stopped = !train_range(learner, checkpoints, config, grid, schedule, samples, b, e, base_ce, answer_ids, outputs,
                             guards.get(), samples_seen, k);
      if (stopped) break;
      outputs.log_progress(static_cast<int64_t>(e));
    }
    train_seconds += seconds_since(t);
    if (config.generate && !stopped) {
      auto g = std::chrono::steady_clock::now();
      answer(model, encoder, config, grid, samples, 0, samples.size(), outputs, predictions, nullptr);
      generate_seconds += seconds_since(g);
    }
  }

  const std::string adapter_dir = config.output_dir + "/adapter";
  checkpoints.finish(samples_seen, learner.steps(), trainable, learner.optimizer());
  if (stopped) {
    if (!checkpoints.enabled())
      log_warn("stopped by a signal without --checkpoint-dir: what this run learned is not saved");
    log_info(str_cat("stopped by a signal after step ", learner.steps(), " (", samples_seen, " of ", samples.size(),
                     " prompts learned); continue with --resume latest"));
    nlohmann::json summary = {{"stopped", true}, {"steps", learner.steps()}, {"samples_learned", samples_seen},
                              {"samples", samples.size()}, {"layout", grid.describe()}, {"config", method},
                              {"memory", memory.report(model, trainable, &learner.optimizer(), grid.host_world)}};
    outputs.write_summary(summary);
    return summary;
  }
  const auto full_adapter = trainable.full_state();  // collective over TP
  if (grid.is_root()) save_peft(adapter_dir, full_adapter, trainable.describe(), model_path, adapter_dir, config.lora.dropout);

  // Input perplexity of the whole stream before and after adaptation.
  trainable.set_enabled(false);
  const double base_ce = mean(score_all(model, samples, config, grid, pad));
  trainable.set_enabled(true);
  const double adapted_ce = mean(score_all(model, samples, config, grid, pad));

  nlohmann::json summary = {
      {"mode", online ? "online" : "offline"}, {"data", config.data}, {"model", model_path},
      {"samples", samples.size()}, {"steps", learner.steps()},
      {"skipped_steps", learner.skipped_steps()},
      {"selected", outputs.selected()}, {"selected_fraction", outputs.trained() ? double(outputs.selected()) / outputs.trained() : 0.0},
      {"records_skipped", job.set.skips.to_json()}, {"records_too_short", job.counters.too_short},
      {"prompts_truncated", job.counters.truncated},
      {"input_ce_base", base_ce}, {"input_ce_adapted", adapted_ce},
      {"input_ppl_base", std::exp(base_ce)}, {"input_ppl_adapted", std::exp(adapted_ce)},
      {"train_seconds", train_seconds}, {"generate_seconds", generate_seconds},
      {"train_tokens_per_s", outputs.train_tokens_per_second()},
      {"adapter", adapter_dir}, {"layout", grid.describe()},
      {"config", method}};
  if (guards) summary["guards"] = guards->summary();

  trainable.set_enabled(false);
  const std::optional<ContinuationNll> base_nll = answer_nll_of_references(model, encoder, config, grid, samples);
  trainable.set_enabled(true);
  const std::optional<ContinuationNll> adapted_nll = answer_nll_of_references(model, encoder, config, grid, samples);
  add_reference_metrics(summary, samples, predictions, base_nll, adapted_nll);
  summary["wall_seconds"] = seconds_since(start);
  summary["memory"] = memory.report(model, trainable, &learner.optimizer(), grid.host_world);
  outputs.write_summary(summary);
  log_info(str_cat("input perplexity ", fixed(std::exp(base_ce), 3), " -> ", fixed(std::exp(adapted_ce), 3),
                   " (ce ", fixed(base_ce, 4), " -> ", fixed(adapted_ce, 4), "); ", outputs.selected(),
                   " of ", outputs.trained(), " samples selected; ", learner.steps(), " steps (",
                   learner.skipped_steps(), " skipped)"));
  return summary;
}

}  // namespace tlm
