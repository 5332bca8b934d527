#include "engine/learn/adapt_job.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>

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

AdaptJob::AdaptJob(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                   std::string model_path, const ProcessGrid& grid)
    : model_(model), encoder_(encoder), config_(config), model_path_(std::move(model_path)), grid_(grid),
      start_(std::chrono::steady_clock::now()) {
  TLM_CHECK(config.mode != AdaptMode::Episodic, "AdaptJob runs online and offline jobs (episodic: run_episodic)");
  TLM_CHECK(config.stream_batch > 0 && config.train_batch_size > 0 && config.generation_batch > 0 &&
                config.score_batch > 0,
            "stream_batch, train_batch_size, generation_batch and score_batch must be positive");
  job_ = load_job_samples(config, encoder, grid);
  pad_ = encoder.tokenizer().pad_id().value_or(0);
  memory_ = std::make_unique<MemoryMeter>(grid.device);  // baseline: the loaded model, before the adapters
  // LibTorch seeds its default generators nondeterministically; seed them (as HF Trainer's
  // set_seed does: the CPU's and every GPU's) so LoRA dropout draws the same masks in every
  // run, and a resumed run can continue them from the checkpoint's generator state.
  at::manual_seed(config.lora.seed);
  trainable_ = make_trainable(model, config);  // LoRA, or the norm weights (trainable: norm-affine)
  learner_ = std::make_unique<TestTimeLearner>(model, *trainable_, make_objective(config.method, model), config.step,
                                               config.adamw, grid.dp, grid.host_dp);
  fisher_ = make_fisher(config, encoder, grid, model, *trainable_);
  learner_->set_regulariser(fisher_);  // estimated under the fresh trainables, before any resume
  TLM_CHECK(!config.method.needs_generated_tokens() || (online() && config.generate),
            "objective.positions: generated needs an online job that generates its answers "
            "(mode online, generation.enabled true)");
  method_ = method_json(config, learner_->objective(), *trainable_);
  if (fisher_) method_.update(fisher_->spec());
  identity_.engine_version = "tlm 0.1.0";
  identity_.base_model_path = model_path_;
  identity_.base_config_hash = content_fingerprint(model.config().summary());
  identity_.tp_at_save = grid.tp_size;
  identity_.dp_at_save = grid.dp_size;
  identity_.method_json = method_.dump();
  stream_identity_ = str_cat(config.data, " (", samples().size(), " prompts)");
  checkpoints_ = std::make_unique<JobCheckpoints>(config.checkpoints, identity_, stream_identity_, grid,
                                                  &learner_->objective());
  answer_ids_.resize(samples().size());
  ResumePoint point;
  if (!config.resume.empty()) point = resume();
  open_outputs(point);
}

AdaptJob::~AdaptJob() = default;

bool AdaptJob::online() const { return config_.mode == AdaptMode::Online; }

// The checkpoint's trainables, moments, counts, method state and stream offset.
ResumePoint AdaptJob::resume() {
  TLM_CHECK(online(), "--resume: only online jobs resume so far (an offline job reruns from the start)");
  const std::string path = find_resume_checkpoint(config_.resume, config_.checkpoints.directory);
  const CheckpointState state = AdapterCheckpoint::load(path);
  apply_checkpoint(state, identity_, stream_identity_, *trainable_, learner_->optimizer(), path,
                   config_.resume_ignore_base);
  learner_->set_steps(state.global_step);
  checkpoints_->restore(state, path);
  std::map<std::string, at::Tensor> method_state;
  for (const auto& [name, t] : state.method_state) {
    if (name.rfind("guard.", 0) == 0) resumed_.guard_state[name.substr(6)] = t;
    else method_state[name] = t;
  }
  learner_->objective().load_state(method_state, path);
  resumed_.stats = state.stats;
  resumed_.path = path;
  resumed_.scheduler = nlohmann::json::parse(state.scheduler_state, nullptr, false);
  samples_seen_ = state.samples_consumed;
  const int64_t chunk = config_.stream_batch, n = static_cast<int64_t>(samples().size());
  ResumePoint point;
  point.steps = state.global_step;
  point.predictions = config_.generate ? std::min(n, (samples_seen_ + chunk - 1) / chunk * chunk) : 0;
  log_info(str_cat("resumed from ", path, ": step ", state.global_step, ", ", samples_seen_, " of ", n,
                   " prompts learned (saved at tp ", state.identity.tp_at_save, ", running at tp ", grid_.tp_size, ")"));
  return point;
}

// The output files (kept consistent with a resumed checkpoint: answers are written chunk by
// chunk before training), the guards, and the answers a resumed job already wrote.
void AdaptJob::open_outputs(const ResumePoint& point) {
  const bool resumed = !resumed_.path.empty();
  const int64_t n = static_cast<int64_t>(samples().size());
  outputs_ = resumed ? std::make_unique<RunOutputs>(config_.output_dir, n, grid_.is_root(), point)
                     : std::make_unique<RunOutputs>(config_.output_dir, n, grid_.is_root());
  // A resumed job's guards.jsonl: the old lines, read before the guards reopen the file.
  const std::vector<std::string> old_events = resumed ? read_lines(config_.output_dir + "/guards.jsonl")
                                                      : std::vector<std::string>{};
  guards_ = make_guards(config_, encoder_, grid_, model_, *learner_, job_.pad);
  checkpoints_->set_guards(guards_.get());
  if (guards_ && resumed) {
    guards_->load_state(resumed_.guard_state, resumed_.stats, resumed_.path);
    guards_->keep_events_until(old_events, point.steps);
  } else if (!resumed_.guard_state.empty()) {
    log_warn(resumed_.path + ": saved with collapse guards, which this job does not run; their state is dropped");
  }
  predictions_ = outputs_->kept_predictions();
  // Objectives that learn from the generated answers: their token ids, indexed like samples
  // (a resumed job gets the kept ones back from rank 0's predictions.jsonl).
  if (config_.method.needs_generated_tokens()) {
    std::vector<std::string> kept;
    for (const auto& ids : outputs_->kept_prediction_ids()) kept.push_back(pack_ids(ids));
    const std::vector<std::string> all = all_gather_strings(kept, grid_.host_world);  // rank 0's only
    for (size_t i = 0; i < all.size() && i < answer_ids_.size(); ++i) answer_ids_[i] = unpack_ids(all[i]);
  }
}

bool AdaptJob::train(const LrSchedule& schedule, size_t begin, size_t end, const std::vector<double>& selection_ce,
                     int64_t& k) {
  const auto t = std::chrono::steady_clock::now();
  const bool finished = train_range(*learner_, *checkpoints_, config_, grid_, schedule, samples(), begin, end,
                                    selection_ce, answer_ids_, *outputs_, guards_.get(), samples_seen_, k);
  train_seconds_ += seconds_since(t);
  return finished;
}

void AdaptJob::answer_range(size_t begin, size_t end) {
  const auto t = std::chrono::steady_clock::now();
  answer(model_, encoder_, config_, grid_, samples(), begin, end, *outputs_, predictions_,
         config_.method.needs_generated_tokens() ? &answer_ids_ : nullptr);
  generate_seconds_ += seconds_since(t);
}

// Online: per chunk, answer with the current adapter, then learn from it (a fresh optimiser
// and schedule per chunk by default, as the official code does).
bool AdaptJob::run_online() {
  const ScheduleKind kind = parse_schedule(config_.schedule_name());
  const size_t chunk = static_cast<size_t>(config_.stream_batch);
  const size_t bs = static_cast<size_t>(config_.train_batch_size);
  const size_t offset = static_cast<size_t>(samples_seen_);
  const size_t n = samples().size();
  LrSchedule schedule;
  int64_t k = 0;
  bool schedule_ready = false;
  for (size_t b = 0; b < n; b += chunk) {
    const size_t e = std::min(n, b + chunk);
    if (e <= offset) continue;  // learned before the resume
    const size_t from = std::max(b, offset);
    if (config_.generate && from == b) answer_range(b, e);
    if (config_.fresh_optimizer_per_chunk) {
      if (from == b && b > 0) learner_->optimizer().reset();
      schedule = LrSchedule::make(kind, config_.learning_rate, steps_for(e - b, config_.train_batch_size), config_.warmup());
      k = static_cast<int64_t>((from - b + bs - 1) / bs);
    } else if (!schedule_ready) {
      schedule = LrSchedule::make(kind, config_.learning_rate, steps_for(n, config_.train_batch_size), config_.warmup());
      k = learner_->steps();
      schedule_ready = true;
    }
    if (from > b && resumed_.scheduler.is_object() && resumed_.scheduler.contains("next_step")) {
      // Mid-chunk resume: the schedule rebuilt from the stream position must be the saved one.
      const nlohmann::json& r = resumed_.scheduler;
      TLM_CHECK(r["next_step"].get<int64_t>() == k && r["total_steps"].get<int64_t>() == schedule.total_steps &&
                    r["base_lr"].get<double>() == schedule.base_lr,
                config_.resume, ": the checkpoint's schedule ", r.dump(), " does not match this job's at sample ",
                from, " (step ", k, " of ", schedule.total_steps, ", lr ", schedule.base_lr, ")");
    }
    resumed_.scheduler = nullptr;
    const bool finished = train(schedule, from, e, {}, k);
    outputs_->log_progress(samples_seen_);
    if (!finished) return false;
  }
  return true;
}

// Offline: score every prompt with the adapters off, train one pass, then answer them all.
bool AdaptJob::run_offline() {
  trainable_->set_enabled(false);
  const auto t = std::chrono::steady_clock::now();
  const std::vector<double> base_ce = score_all(model_, samples(), config_, grid_, pad_);
  trainable_->set_enabled(true);
  train_seconds_ += seconds_since(t);
  const LrSchedule schedule = LrSchedule::make(parse_schedule(config_.schedule_name()), config_.learning_rate,
                                               steps_for(samples().size(), config_.train_batch_size), config_.warmup());
  // Progress in chunks of stream_batch so long offline runs report as they go.
  const size_t chunk = static_cast<size_t>(config_.stream_batch * config_.train_batch_size);
  int64_t k = 0;
  for (size_t b = 0; b < samples().size(); b += chunk) {
    const size_t e = std::min(samples().size(), b + chunk);
    if (!train(schedule, b, e, base_ce, k)) return false;
    outputs_->log_progress(static_cast<int64_t>(e));
  }
  if (config_.generate) answer_range(0, samples().size());
  return true;
}

nlohmann::json AdaptJob::run() {
  log_info(str_cat(online() ? "online" : "offline", " ", learner_->objective().spec().value("method", "?"), " on ",
                   samples().size(), " prompts from ", config_.data, ": ", trainable_summary(*trainable_), ", lr ",
                   config_.learning_rate, " (", config_.schedule_name(), "), ",
                   objective_summary(learner_->objective().spec())));
  const bool finished = online() ? run_online() : run_offline();
  checkpoints_->finish(samples_seen_, learner_->steps(), *trainable_, learner_->optimizer());
  return finished ? finish() : stopped();
}

nlohmann::json AdaptJob::stopped() {
  if (!checkpoints_->enabled())
    log_warn("stopped by a signal without --checkpoint-dir: what this run learned is not saved");
  log_info(str_cat("stopped by a signal after step ", learner_->steps(), " (", samples_seen_, " of ", samples().size(),
                   " prompts learned); continue with --resume latest"));
  nlohmann::json summary = {{"stopped", true}, {"steps", learner_->steps()}, {"samples_learned", samples_seen_},
                            {"samples", samples().size()}, {"layout", grid_.describe()}, {"config", method_},
                            {"memory", memory_->report(model_, *trainable_, &learner_->optimizer(), grid_.host_world)}};
  outputs_->write_summary(summary);
  return summary;
}

// The adapter (PEFT form), the stream's perplexity and the references' NLL with and without
// it, and summary.json.
nlohmann::json AdaptJob::finish() {
  const std::string adapter_dir = config_.output_dir + "/adapter";
  const auto full_adapter = trainable_->full_state();  // collective over TP
  if (grid_.is_root())
    save_peft(adapter_dir, full_adapter, trainable_->describe(), model_path_, adapter_dir, config_.lora.dropout);
  const auto score_start = std::chrono::steady_clock::now();
  trainable_->set_enabled(false);
  const double base_ce = mean(score_all(model_, samples(), config_, grid_, pad_));
  trainable_->set_enabled(true);
  const double adapted_ce = mean(score_all(model_, samples(), config_, grid_, pad_));
  const double score_seconds = seconds_since(score_start);
  int64_t score_tokens = 0;
  for (const Sample& s : samples()) score_tokens += 2 * static_cast<int64_t>(s.ids.size());
  const RunOutputs& out = *outputs_;
  nlohmann::json summary = {
      {"mode", online() ? "online" : "offline"}, {"data", config_.data}, {"model", model_path_},
      {"samples", samples().size()}, {"steps", learner_->steps()}, {"skipped_steps", learner_->skipped_steps()},
      {"selected", out.selected()}, {"selected_fraction", out.trained() ? double(out.selected()) / out.trained() : 0.0},
      {"records_skipped", job_.set.skips.to_json()}, {"records_too_short", job_.counters.too_short},
      {"prompts_truncated", job_.counters.truncated},
      {"input_ce_base", base_ce}, {"input_ce_adapted", adapted_ce},
      {"input_ppl_base", std::exp(base_ce)}, {"input_ppl_adapted", std::exp(adapted_ce)},
      {"train_seconds", train_seconds_}, {"generate_seconds", generate_seconds_},
      {"train_tokens_per_s", out.train_tokens_per_second()}, {"train_tokens", out.train_tokens()},
      {"score_seconds", score_seconds}, {"score_tokens", score_tokens},
      {"adapter", adapter_dir}, {"layout", grid_.describe()}, {"config", method_}};
  if (guards_) summary["guards"] = guards_->summary();
  trainable_->set_enabled(false);
  const std::optional<ContinuationNll> base_nll = answer_nll_of_references(model_, encoder_, config_, grid_, samples());
  trainable_->set_enabled(true);
  const std::optional<ContinuationNll> adapted_nll = answer_nll_of_references(model_, encoder_, config_, grid_, samples());
  add_reference_metrics(summary, samples(), predictions_, base_nll, adapted_nll);
  summary["wall_seconds"] = seconds_since(start_);
  summary["memory"] = memory_->report(model_, *trainable_, &learner_->optimizer(), grid_.host_world);
  outputs_->write_summary(summary);
  log_info(str_cat("input perplexity ", fixed(std::exp(base_ce), 3), " -> ", fixed(std::exp(adapted_ce), 3),
                   " (ce ", fixed(base_ce, 4), " -> ", fixed(adapted_ce, 4), "); ", out.selected(), " of ",
                   out.trained(), " samples selected; ", learner_->steps(), " steps (", learner_->skipped_steps(),
                   " skipped)"));
  return summary;
}

nlohmann::json run_adaptation(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                              const std::string& model_path, const ProcessGrid& grid) {
  if (config.mode == AdaptMode::Episodic) return run_episodic(model, encoder, config, model_path, grid);
  AdaptJob job(model, encoder, config, model_path, grid);
  return job.run();
}

}  // namespace tlm
