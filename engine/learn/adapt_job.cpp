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
#include "engine/learn/job_setup.h"
#include "engine/learn/job_steps.h"
#include "engine/learn/stream_job.h"
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
  identity_ = job_identity(model, model_path_, grid, method_);
  stream_identity_ = str_cat(config.data, " (", samples().size(), " prompts)");
  checkpoints_ = std::make_unique<JobCheckpoints>(config.checkpoints, identity_, stream_identity_, grid,
                                                  &learner_->objective());
  checkpoints_->claim_directory(!config.resume.empty());
  answer_ids_.resize(samples().size());
  ResumePoint point;
  if (!config.resume.empty()) point = resume();
  open_outputs(point);
}

AdaptJob::~AdaptJob() = default;

bool AdaptJob::online() const { return config_.mode == AdaptMode::Online; }

// The checkpoint's trainables, moments, counts, method state and stream offset.
ResumePoint AdaptJob::resume() {
  resumed_ = restore_job(config_, identity_, stream_identity_, *learner_, *checkpoints_);
  samples_seen_ = resumed_.samples_consumed;
  const int64_t chunk = config_.stream_batch, n = static_cast<int64_t>(samples().size());
  ResumePoint point;
  point.steps = resumed_.steps;
  // Online jobs answer each chunk before learning it; offline jobs answer all prompts after the
  // pass, so a stopped offline job has no answers to keep.
  point.predictions = config_.generate && online() ? std::min(n, (samples_seen_ + chunk - 1) / chunk * chunk) : 0;
  log_info(str_cat("resumed from ", resumed_.path, ": step ", resumed_.steps, ", ", samples_seen_, " of ", n,
                   " prompts learned (saved at tp ", resumed_.tp_at_save, ", running at tp ", grid_.tp_size, ")"));
  return point;
}

// The output files (kept consistent with a resumed checkpoint: answers are written chunk by
// chunk before training), the guards, and the answers a resumed job already wrote.
void AdaptJob::open_outputs(const ResumePoint& point) {
  const bool resumed = !resumed_.path.empty();
  const int64_t n = static_cast<int64_t>(samples().size());
  outputs_ = resumed ? std::make_unique<RunOutputs>(config_.output_dir, n, grid_.is_root(), point)
                     : std::make_unique<RunOutputs>(config_.output_dir, n, grid_.is_root());
  guards_ = open_guards(config_, encoder_, grid_, model_, *learner_, job_.pad, resumed_);
  checkpoints_->set_guards(guards_.get());
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

bool AdaptJob::answer_range(size_t begin, size_t end) {
  const auto t = std::chrono::steady_clock::now();
  const bool answered = answer(model_, encoder_, config_, grid_, samples(), begin, end, *outputs_, predictions_,
                               config_.method.needs_generated_tokens() ? &answer_ids_ : nullptr);
  generate_seconds_ += seconds_since(t);
  return answered;
}

// A resume mid-schedule: the schedule rebuilt from the stream position must be the saved one.
void AdaptJob::check_resumed_schedule(const LrSchedule& schedule, int64_t k, size_t from) const {
  const nlohmann::json& r = resumed_.scheduler;
  if (!r.is_object() || !r.contains("next_step")) return;
  TLM_CHECK(r["next_step"].get<int64_t>() == k && r["total_steps"].get<int64_t>() == schedule.total_steps &&
                r["base_lr"].get<double>() == schedule.base_lr,
            config_.resume, ": the checkpoint's schedule ", r.dump(), " does not match this job's at sample ", from,
            " (step ", k, " of ", schedule.total_steps, ", lr ", schedule.base_lr, ")");
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
    if (config_.generate && from == b && !answer_range(b, e)) return false;  // stopped mid-answer
    if (config_.fresh_optimizer_per_chunk) {
      if (from == b && b > 0) learner_->optimizer().reset();
      schedule = LrSchedule::make(kind, config_.learning_rate, steps_for(e - b, config_.train_batch_size), config_.warmup());
      k = static_cast<int64_t>((from - b + bs - 1) / bs);
    } else if (!schedule_ready) {
      schedule = LrSchedule::make(kind, config_.learning_rate, steps_for(n, config_.train_batch_size), config_.warmup());
      k = learner_->steps();
      schedule_ready = true;
    }
    if (from > b) check_resumed_schedule(schedule, k, from);
    resumed_.scheduler = nullptr;
    const bool finished = train(schedule, from, e, {}, k);
    outputs_->log_progress(samples_seen_);
    if (!finished) return false;
  }
  return true;
}

// Offline: score every prompt with the adapters off, train one pass, then answer them all. A
// resumed job scores again (the adapters are off: the same numbers) and continues the pass and
// its schedule at the checkpoint's sample.
bool AdaptJob::run_offline() {
  const size_t offset = static_cast<size_t>(samples_seen_);  // learned before a resume
  std::vector<double> base_ce;
  if (offset < samples().size()) {
    trainable_->set_enabled(false);
    const auto t = std::chrono::steady_clock::now();
    base_ce = score_all(model_, samples(), config_, grid_, pad_);
    trainable_->set_enabled(true);
    train_seconds_ += seconds_since(t);
  }
  const LrSchedule schedule = LrSchedule::make(parse_schedule(config_.schedule_name()), config_.learning_rate,
                                               steps_for(samples().size(), config_.train_batch_size), config_.warmup());
  // Progress in chunks of stream_batch so long offline runs report as they go.
  const size_t chunk = static_cast<size_t>(config_.stream_batch * config_.train_batch_size);
  const size_t bs = static_cast<size_t>(config_.train_batch_size);
  int64_t k = static_cast<int64_t>((offset + bs - 1) / bs);
  if (offset > 0) check_resumed_schedule(schedule, k, offset);
  resumed_.scheduler = nullptr;
  for (size_t b = 0; b < samples().size(); b += chunk) {
    const size_t e = std::min(samples().size(), b + chunk);
    if (e <= offset) continue;
    if (!train(schedule, std::max(b, offset), e, base_ce, k)) return false;
    outputs_->log_progress(static_cast<int64_t>(e));
  }
  return !config_.generate || answer_range(0, samples().size());
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

// Stopped by a signal: with checkpoints the job continues with --resume; without, the adapter
// learned so far is written (PEFT form) so that the run's learning is not lost.
nlohmann::json AdaptJob::stopped() {
  const std::string progress = str_cat("stopped by a signal after step ", learner_->steps(), " (", samples_seen_,
                                       " of ", samples().size(), " prompts learned)");
  std::string adapter_dir;
  if (checkpoints_->enabled()) {
    log_info(str_cat(progress, "; continue with --resume latest"));
  } else {
    adapter_dir = config_.output_dir + "/adapter";
    const auto full_adapter = trainable_->full_state();  // collective over TP
    if (grid_.is_root())
      save_peft(adapter_dir, full_adapter, trainable_->describe(), model_path_, adapter_dir, config_.lora.dropout);
    log_warn(str_cat(progress, " without --checkpoint-dir: the adapter learned so far is in ", adapter_dir,
                     ", but the job cannot resume (give --checkpoint-dir to make a stopped job resumable)"));
  }
  nlohmann::json summary = {{"stopped", true}, {"resumable", checkpoints_->enabled()}, {"adapter", adapter_dir},
                            {"steps", learner_->steps()}, {"samples_learned", samples_seen_},
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
  if (is_stream_job(config)) return StreamJob(model, encoder, config, model_path, grid).run();
  if (config.mode == AdaptMode::Episodic) return run_episodic(model, encoder, config, model_path, grid);
  AdaptJob job(model, encoder, config, model_path, grid);
  return job.run();
}

}  // namespace tlm
