#include "engine/learn/stream_job.h"

#include <algorithm>
#include <cmath>

#include "dist/gather_objects.h"
#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/learn/fisher_regulariser.h"
#include "engine/learn/guards.h"
#include "engine/learn/job_checkpoints.h"
#include "engine/learn/lr_schedule.h"
#include "engine/learn/peft_adapter.h"
#include "engine/learn/test_time_learner.h"
#include "engine/model/llama_model.h"

namespace tlm {

bool is_stream_job(const AdaptConfig& config) { return config.data == "-" || config.follow; }

namespace {

nlohmann::json record_json(const PromptRecord& r) {
  nlohmann::json j = {{"prompt", r.prompt}, {"source", r.source}, {"line", r.line}, {"index", r.index}};
  if (r.reference) j["reference"] = *r.reference;
  return j;
}

PromptRecord record_of(const nlohmann::json& j) {
  PromptRecord r;
  r.prompt = j.at("prompt").get<std::string>();
  if (j.contains("reference")) r.reference = j.at("reference").get<std::string>();
  r.source = j.at("source").get<std::string>();
  r.line = j.at("line").get<int64_t>();
  r.index = j.at("index").get<int64_t>();
  return r;
}

std::string stream_source(const AdaptConfig& config) { return config.data == "-" ? "<stdin>" : config.data; }

}  // namespace

StreamJob::StreamJob(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                     std::string model_path, const ProcessGrid& grid)
    : model_(model), encoder_(encoder), config_(config), model_path_(std::move(model_path)), grid_(grid),
      start_(std::chrono::steady_clock::now()) {
  TLM_CHECK(config.mode == AdaptMode::Online, "--data - and --follow read an unbounded stream: mode online only "
            "(an offline job needs the whole stream before its first step; give it a file with --data)");
  TLM_CHECK(config.stream_batch > 0 && config.train_batch_size > 0 && config.generation_batch > 0,
            "stream_batch, train_batch_size and generation_batch must be positive");
  TLM_CHECK(config.fresh_optimizer_per_chunk || parse_schedule(config.schedule_name()) == ScheduleKind::Constant,
            "an unbounded stream has no last step: with optim.fresh_optimizer_per_chunk false the schedule must be "
            "constant (optim.schedule), not ", config.schedule_name());
  TLM_CHECK(!config.method.needs_generated_tokens() || config.generate,
            "objective.positions: generated needs the answers (generation.enabled true)");
  pad_ = encoder.tokenizer().pad_id().value_or(0);
  memory_ = std::make_unique<MemoryMeter>(grid.device);
  at::manual_seed(config.lora.seed);  // as AdaptJob: the dropout draws of every run and resume agree
  trainable_ = make_trainable(model, config);
  learner_ = std::make_unique<TestTimeLearner>(model, *trainable_, make_objective(config.method, model), config.step,
                                               config.adamw, grid.dp, grid.host_dp);
  std::shared_ptr<const FisherRegulariser> fisher = make_fisher(config, encoder, grid, model, *trainable_);
  learner_->set_regulariser(fisher);
  method_ = method_json(config, learner_->objective(), *trainable_);
  if (fisher) method_.update(fisher->spec());
  identity_ = job_identity(model, model_path_, grid, method_);
  stream_identity_ = config.data == "-" ? "<stdin> (stream)" : config.data + " (followed)";
  checkpoints_ = std::make_unique<JobCheckpoints>(config.checkpoints, identity_, stream_identity_, grid,
                                                  &learner_->objective());
  checkpoints_->claim_directory(!config.resume.empty());
  if (!config.resume.empty()) {
    resume();
  } else {
    outputs_ = std::make_unique<RunOutputs>(config.output_dir, 0, grid.is_root());
  }
  guards_ = open_guards(config, encoder, grid, model, *learner_, pad_, resumed_);
  checkpoints_->set_guards(guards_.get());
  if (grid.is_root()) feed_ = std::make_unique<RecordFeed>(config.data, config.data_options, position_, true);
}

StreamJob::~StreamJob() = default;

// The checkpoint's state, and where in the stream it stopped: the unfinished chunk's start and
// how many of its prompts were learned (the chunk is read again and the rest learned).
void StreamJob::resume() {
  resumed_ = restore_job(config_, identity_, stream_identity_, *learner_, *checkpoints_);
  samples_seen_ = resumed_.samples_consumed;
  const nlohmann::json& s = resumed_.scheduler;
  TLM_CHECK(samples_seen_ == 0 || (s.is_object() && s.contains("stream")), resumed_.path,
            ": has no stream position (scheduler state ", s.dump(), "): not a checkpoint of a --data - / --follow job");
  ResumePoint point;
  point.steps = resumed_.steps;
  if (s.is_object() && s.contains("stream")) {
    const nlohmann::json& p = s["stream"];
    position_ = StreamPosition::from_json(p, resumed_.path);
    resume_learned_ = p.value("chunk_learned", int64_t{0});
    if (resume_learned_ > 0) resume_chunk_size_ = p.value("chunk_samples", int64_t{0});
  }
  records_taken_ = position_.records;
  const int64_t chunk_base = samples_seen_ - resume_learned_;
  point.predictions = !config_.generate ? 0 : resume_learned_ > 0 ? chunk_base + resume_chunk_size_ : samples_seen_;
  point.keep_predictions_from = chunk_base;
  outputs_ = std::make_unique<RunOutputs>(config_.output_dir, 0, grid_.is_root(), point);
  if (config_.method.needs_generated_tokens() && resume_learned_ > 0) {
    std::vector<std::string> kept;  // the unfinished chunk's answers, from rank 0's predictions.jsonl
    for (const auto& ids : outputs_->kept_prediction_ids()) kept.push_back(pack_ids(ids));
    for (const std::string& ids : all_gather_strings(kept, grid_.host_world)) resume_answer_ids_.push_back(unpack_ids(ids));
  }
  log_info(str_cat("resumed from ", resumed_.path, ": step ", resumed_.steps, ", ", samples_seen_,
                   " prompts learned; the stream continues at byte ", position_.offset, " (line ", position_.lines + 1,
                   ", record ", position_.records, ")", resume_learned_ > 0
                       ? str_cat(", in a chunk of ", resume_chunk_size_, " of which ", resume_learned_, " were learned")
                       : std::string()));
}

// One round of reading: rank 0 takes up to `want` records that are there now (waiting at most
// the feed's poll interval for more), and every rank receives them with the stream's position.
bool StreamJob::take_records(size_t want) {
  std::vector<std::string> local;
  if (grid_.is_root()) {
    nlohmann::json records = nlohmann::json::array();
    while (records.size() < want && (config_.max_samples <= 0 || records_taken_ < config_.max_samples)) {
      std::optional<PromptRecord> r = feed_->next();
      if (!r) break;
      records.push_back(record_json(*r));
      ++records_taken_;
    }
    const bool ended = feed_->ended() || (config_.max_samples > 0 && records_taken_ >= config_.max_samples);
    local.push_back(nlohmann::json{{"records", records}, {"ended", ended}, {"position", feed_->position().to_json()}}
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  const std::vector<std::string> all = all_gather_strings(local, grid_.host_world);  // rank 0's message
  TLM_CHECK(all.size() == 1, "stream: expected one message from rank 0, got ", all.size());
  const nlohmann::json msg = nlohmann::json::parse(all[0]);
  for (const nlohmann::json& r : msg["records"]) pending_.push_back(record_of(r));
  ended_ = msg["ended"].get<bool>();
  position_ = StreamPosition::from_json(msg["position"], "stream");
  if (!grid_.is_root()) records_taken_ += static_cast<int64_t>(msg["records"].size());
  return !msg["records"].empty();
}

// Fills `chunk` with stream_batch usable prompts (fewer when the stream ended). Reads only as
// many records as prompts are missing, so a chunk ends exactly after its last record.
bool StreamJob::read_chunk(Chunk& chunk) {
  const size_t batch = static_cast<size_t>(config_.stream_batch);
  while (chunk.samples.size() < batch && !ended_) {
    take_records(batch - chunk.samples.size());
    for (Sample& s : encode_records(pending_, encoder_, counters_, grid_.is_root())) chunk.samples.push_back(std::move(s));
    pending_.clear();
    if (chunk.samples.size() < batch && !ended_ && checkpoints_->stop_agreed()) return false;
  }
  chunk.end = position_;
  return true;
}

// The stream position a checkpoint after `samples_seen` prompts records: the chunk's end once
// it is learned, else its start and how much of it was learned.
nlohmann::json StreamJob::position_after(const Chunk& chunk, int64_t samples_seen) const {
  const int64_t learned = samples_seen - chunk.base;
  const bool done = learned >= static_cast<int64_t>(chunk.samples.size());
  nlohmann::json p = (done ? chunk.end : chunk.start).to_json();
  p["chunk_learned"] = done ? 0 : learned;
  p["chunk_samples"] = done ? 0 : static_cast<int64_t>(chunk.samples.size());
  return {{"stream", p}};
}

// Answers the chunk with the current adapter (unless a resume finds it answered), then learns
// it from prompt `from` on, as AdaptJob::run_online does for a chunk of a file.
bool StreamJob::learn_chunk(const Chunk& chunk, int64_t from) {
  const size_t n = chunk.samples.size(), bs = static_cast<size_t>(config_.train_batch_size);
  std::vector<std::vector<int32_t>> answer_ids(n);
  if (config_.generate && from == 0) {
    const auto t = std::chrono::steady_clock::now();
    std::vector<std::string> predictions;  // written to predictions.jsonl, not kept
    const bool answered = answer(model_, encoder_, config_, grid_, chunk.samples, 0, n, *outputs_, predictions,
                                 config_.method.needs_generated_tokens() ? &answer_ids : nullptr);
    generate_seconds_ += seconds_since(t);
    if (!answered) return false;  // stopped mid-answer: the chunk is answered again on resume
  } else if (from > 0 && config_.method.needs_generated_tokens()) {
    TLM_CHECK(resume_answer_ids_.size() == n, resumed_.path, ": the unfinished chunk has ", n,
              " prompts but predictions.jsonl keeps ", resume_answer_ids_.size(), " of its answers");
    answer_ids = resume_answer_ids_;
  }
  const ScheduleKind kind = parse_schedule(config_.schedule_name());
  LrSchedule schedule;
  int64_t k = 0;
  if (config_.fresh_optimizer_per_chunk) {
    if (from == 0 && chunk.base > 0) learner_->optimizer().reset();
    schedule = LrSchedule::make(kind, config_.learning_rate, steps_for(n, config_.train_batch_size), config_.warmup());
    k = static_cast<int64_t>((static_cast<size_t>(from) + bs - 1) / bs);
  } else {
    schedule = LrSchedule::make(kind, config_.learning_rate, 0, 0.0);  // constant: no last step needed
    k = learner_->steps();
  }
  const auto t = std::chrono::steady_clock::now();
  const bool finished =
      train_range(*learner_, *checkpoints_, config_, grid_, schedule, chunk.samples, static_cast<size_t>(from), n, {},
                  answer_ids, *outputs_, guards_.get(), samples_seen_, k,
                  [&](int64_t seen) { return position_after(chunk, seen); });
  train_seconds_ += seconds_since(t);
  outputs_->log_progress(samples_seen_);
  return finished;
}

nlohmann::json StreamJob::run() {
  log_info(str_cat("online ", learner_->objective().spec().value("method", "?"), " on the stream ",
                   stream_source(config_), config_.follow ? " (followed: runs until a signal)" : "", ": ",
                   trainable_summary(*trainable_), ", lr ", config_.learning_rate, " (", config_.schedule_name(),
                   "), ", objective_summary(learner_->objective().spec())));
  bool stopped = false;
  for (bool first = true;; first = false) {
    Chunk chunk;
    chunk.start = position_;
    chunk.base = samples_seen_ - (first ? resume_learned_ : 0);
    stop_offset_ = chunk.start.offset;  // where a stopped job continues, learned or not
    if (!read_chunk(chunk)) {
      stopped = true;
      break;
    }
    if (chunk.samples.empty()) break;  // the stream ended
    int64_t from = 0;
    if (first && resume_chunk_size_ >= 0) {
      TLM_CHECK(static_cast<int64_t>(chunk.samples.size()) == resume_chunk_size_, resumed_.path,
                ": the stream from byte ", chunk.start.offset, " gives a chunk of ", chunk.samples.size(),
                " prompts, but the checkpoint's unfinished chunk had ", resume_chunk_size_,
                ": feed the same stream from that byte");
      from = resume_learned_;
    }
    if (!learn_chunk(chunk, from)) {
      stopped = true;
      break;
    }
  }
  checkpoints_->finish(samples_seen_, learner_->steps(), *trainable_, learner_->optimizer());
  return summary(stopped);
}

// The adapter (PEFT form) and summary.json, whether the stream ended or a signal stopped it.
// No rescoring pass: the stream is not kept; its perplexity is the one the learner met.
nlohmann::json StreamJob::summary(bool stopped) {
  const std::string adapter_dir = config_.output_dir + "/adapter";
  const auto full_adapter = trainable_->full_state();  // collective over TP
  if (grid_.is_root())
    save_peft(adapter_dir, full_adapter, trainable_->describe(), model_path_, adapter_dir, config_.lora.dropout);
  const RunOutputs& out = *outputs_;
  const double ce = out.mean_ce();
  nlohmann::json skips = nlohmann::json::object();
  if (feed_)
    for (const auto& [kind, count] : feed_->skip_counts()) skips[kind] = count;
  nlohmann::json summary = {
      {"mode", "online"}, {"stream", stream_source(config_)}, {"follow", config_.follow}, {"model", model_path_},
      {"stopped", stopped}, {"ended", ended_ && !stopped}, {"samples", samples_seen_},
      {"steps", learner_->steps()}, {"skipped_steps", learner_->skipped_steps()}, {"selected", out.selected()},
      {"selected_fraction", out.trained() ? double(out.selected()) / out.trained() : 0.0},
      {"input_ce_seen", ce}, {"input_ppl_seen", std::exp(ce)}, {"stream_position", position_.to_json()},
      {"records_skipped", skips}, {"records_too_short", counters_.too_short},
      {"prompts_truncated", counters_.truncated}, {"train_seconds", train_seconds_},
      {"generate_seconds", generate_seconds_}, {"train_tokens_per_s", out.train_tokens_per_second()},
      {"train_tokens", out.train_tokens()}, {"adapter", adapter_dir}, {"layout", grid_.describe()},
      {"config", method_}};
  if (guards_) summary["guards"] = guards_->summary();
  summary["wall_seconds"] = seconds_since(start_);
  summary["memory"] = memory_->report(model_, *trainable_, &learner_->optimizer(), grid_.host_world);
  out.write_summary(summary);
  log_info(str_cat(stopped ? "stopped by a signal" : "the stream ended", " after ", samples_seen_,
                   " prompts: input perplexity as met ", fixed(std::exp(ce), 3), " (ce ", fixed(ce, 4), "); ",
                   out.selected(), " of ", out.trained(), " samples selected; ", learner_->steps(), " steps (",
                   learner_->skipped_steps(), " skipped); adapter in ", adapter_dir));
  if (stopped && checkpoints_->enabled())
    log_info(str_cat("continue with --resume latest", config_.data == "-"
                         ? str_cat(", feeding standard input from byte ", stop_offset_, " of the stream")
                         : std::string()));
  if (stopped && !checkpoints_->enabled())
    log_warn("stopped without --checkpoint-dir: the adapter is saved, but the job cannot resume exactly");
  return summary;
}

}  // namespace tlm
