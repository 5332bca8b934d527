#include "engine/serve/serve_engine.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/learn/job_steps.h"
#include "engine/learn/lr_schedule.h"
#include "engine/model/llama_model.h"

namespace tlm {

ServeEngine::ServeEngine(LlamaModel& model, TrainableSet& trainable, TestTimeLearner& learner, SessionStore& sessions,
                         const AdaptConfig& config, ServeOptions options, std::vector<int32_t> stop_ids,
                         ServeMetrics& metrics)
    : model_(model), trainable_(trainable), learner_(learner), sessions_(sessions), config_(config),
      options_(options), stop_ids_(std::move(stop_ids)), metrics_(metrics) {
  TLM_CHECK(options_.max_batch_rows >= 1, "serve.max_batch_rows must be >= 1");
  TLM_CHECK(config_.fresh_optimizer_per_chunk || config_.schedule_name() == "constant",
            "tlm serve learns from an unbounded stream: with optim.fresh_optimizer_per_chunk false the schedule "
            "must be constant (got ", config_.schedule_name(), ")");
}

std::shared_ptr<RequestChannel> ServeEngine::submit(ServeJob job) {
  auto channel = std::make_shared<RequestChannel>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw ApiError(503, "server_error", "the server is shutting down");
    inbox_.push_back({next_id_++, Active{channel, std::move(job), 0}});
  }
  wake_.notify_one();
  return channel;
}

nlohmann::json ServeEngine::call(std::function<nlohmann::json()> task) {
  auto t = std::make_unique<Task>();
  t->run = std::move(task);
  std::future<nlohmann::json> result = t->result.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back(std::move(t));
  }
  wake_.notify_one();
  return result.get();
}

void ServeEngine::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
}

bool ServeEngine::stopping() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stopping_;
}

size_t ServeEngine::rows() const {
  size_t n = 0;
  for (const auto& [key, g] : groups_) n += g->batch.size();
  return n;
}

void ServeEngine::use(const Group& g) {
  trainable_.set_enabled(!g.base);
  if (!g.base) sessions_.load_live(g.params);
}

ServeEngine::Group& ServeEngine::group_for(const ModelRef& ref) {
  std::pair<std::string, uint64_t> key{"base", 0};
  AdapterSnapshot params;
  if (ref.kind != ModelRef::Base) {
    Session& s = sessions_.get(ref.id());
    key = {s.id, s.version};
    params = s.params;
  }
  auto it = groups_.find(key);
  if (it == groups_.end()) {
    auto g = std::unique_ptr<Group>(new Group{ref.kind == ModelRef::Base, key.first, params,
                                              DecodeBatch(model_, stop_ids_), {}});
    it = groups_.emplace(key, std::move(g)).first;
  }
  return *it->second;
}

bool ServeEngine::admit() {
  bool any = false;
  while (!waiting_.empty() && rows() < static_cast<size_t>(options_.max_batch_rows)) {
    Waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    any = true;
    if (w.active.channel->cancelled()) {
      w.active.channel->finish(false);
      continue;
    }
    Group* g = nullptr;
    try {
      g = &group_for(w.active.job.ref);
    } catch (const std::exception& e) {
      log_error(std::string("request refused: ") + e.what());
      w.active.channel->finish(false, e.what());
      continue;
    }
    try {
      use(*g);
      const ServeJob& job = w.active.job;
      const DecodeEvent e = g->batch.join(w.id, job.prompt, job.max_tokens, job.sampling);
      metrics_.record_first_token(seconds_since(w.active.channel->submitted));
      g->rows.emplace(w.id, std::move(w.active));
      deliver(*g, e);
    } catch (const std::exception& e) {
      log_error(std::string("prefill failed: ") + e.what());
      g->batch.remove(w.id);
      if (g->rows.count(w.id)) complete(*g, w.id, false, e.what());
      else w.active.channel->finish(false, e.what());
    }
  }
  return any;
}

void ServeEngine::deliver(Group& g, const DecodeEvent& e) {
  Active& a = g.rows.at(e.id);
  if (e.token >= 0) {
    a.channel->push(e.token);
    ++a.generated;
  }
  if (e.finished) complete(g, e.id, e.stopped);
}

void ServeEngine::complete(Group& g, uint64_t id, bool stopped, const std::string& error) {
  auto it = g.rows.find(id);
  if (it == g.rows.end()) return;
  Active a = std::move(it->second);
  g.rows.erase(it);
  metrics_.record_tokens(static_cast<int64_t>(a.job.prompt.size()), a.generated);
  if (!g.base && error.empty()) {
    // Answered: the prompt joins its session's learning queue (the online rule: answer, then learn).
    try {
      Session& s = sessions_.get(g.session);
      ++s.requests;
      if (options_.learn) s.queue.push_back(a.job.prompt);
      s.dirty = true;
    } catch (const std::exception& e) {
      log_error("session " + g.session + ": " + e.what() + "; this prompt is not learned");
    }
  }
  a.channel->finish(stopped, error);
}

bool ServeEngine::decode() {
  bool any = false;
  for (auto it = groups_.begin(); it != groups_.end();) {
    Group& g = *it->second;
    std::vector<uint64_t> cancelled;
    for (const auto& [id, a] : g.rows)
      if (a.channel->cancelled()) cancelled.push_back(id);
    for (uint64_t id : cancelled) {
      g.batch.remove(id);
      complete(g, id, false);
    }
    if (!g.batch.empty()) {
      any = true;
      try {
        use(g);
        for (const DecodeEvent& e : g.batch.step()) deliver(g, e);
      } catch (const std::exception& e) {
        log_error(std::string("decode step failed: ") + e.what());
        std::vector<uint64_t> ids;
        for (const auto& [id, a] : g.rows) ids.push_back(id);
        for (uint64_t id : ids) {
          g.batch.remove(id);
          complete(g, id, false, e.what());
        }
      }
    }
    if (g.batch.empty() && g.rows.empty()) it = groups_.erase(it);
    else ++it;
  }
  return any;
}

Session* ServeEngine::next_learner() {
  const auto& all = sessions_.in_memory();
  auto ready = [&](const Session& s) {
    return s.chunk_pos < s.chunk.size() || static_cast<int64_t>(s.queue.size()) >= config_.stream_batch;
  };
  // Round robin: the first ready session after the last one that learned.
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& [id, s] : all)
      if ((pass == 1 || id > last_learner_) && ready(s)) return sessions_.find(id);
  return nullptr;
}

bool ServeEngine::learn() {
  Session* found = options_.learn ? next_learner() : nullptr;
  if (!found) return false;
  Session& s = *found;
  last_learner_ = s.id;
  const size_t bs = static_cast<size_t>(config_.train_batch_size);
  if (s.chunk_pos >= s.chunk.size()) {  // a new chunk
    s.chunk.assign(s.queue.begin(), s.queue.begin() + config_.stream_batch);
    s.queue.erase(s.queue.begin(), s.queue.begin() + config_.stream_batch);
    s.chunk_pos = 0;
    if (config_.fresh_optimizer_per_chunk) sessions_.reset_optimizer(s);
  }
  const size_t begin = s.chunk_pos, end = std::min(s.chunk.size(), begin + bs);
  const std::vector<std::vector<int32_t>> batch(s.chunk.begin() + static_cast<long>(begin),
                                                s.chunk.begin() + static_cast<long>(end));
  const int64_t total = static_cast<int64_t>((s.chunk.size() + bs - 1) / bs);
  const LrSchedule schedule = LrSchedule::make(parse_schedule(config_.schedule_name()), config_.learning_rate, total,
                                               config_.warmup());
  StepRecord rec;
  try {
    trainable_.set_enabled(true);
    sessions_.begin_step(s);
    rec = learner_.train_step(batch, schedule.lr(static_cast<int64_t>(begin / bs)));
    sessions_.end_step(s, rec.updated);
  } catch (const std::exception& e) {
    sessions_.invalidate_live();
    log_error(str_cat("session ", s.id, ": learning step failed (", e.what(), "); its ", batch.size(),
                      " prompts are not learned"));
  }
  s.chunk_pos = end;
  s.learned += static_cast<int64_t>(batch.size());
  if (s.chunk_pos >= s.chunk.size()) {
    s.chunk.clear();
    s.chunk_pos = 0;
  }
  s.dirty = true;
  const int64_t selected = std::count(rec.selected.begin(), rec.selected.end(), true);
  metrics_.record_learning_step(rec.updated, static_cast<int64_t>(batch.size()), selected,
                                rec.current_ce.empty() ? rec.ce : rec.current_ce);
  ++steps_since_save_;
  return true;
}

void ServeEngine::maybe_checkpoint(bool force) {
  if (!sessions_.persistent()) return;
  const bool by_steps = options_.checkpoint_every_steps > 0 && steps_since_save_ >= options_.checkpoint_every_steps;
  const bool by_time = options_.checkpoint_every_seconds > 0 && seconds_since(last_save_) >= options_.checkpoint_every_seconds;
  if (!force && !by_steps && !by_time) return;
  bool dirty = false;
  for (const auto& [id, s] : sessions_.in_memory()) dirty |= s.dirty;
  last_save_ = std::chrono::steady_clock::now();
  steps_since_save_ = 0;
  if (!dirty) return;
  try {
    sessions_.save_all();
    metrics_.record_checkpoint();
  } catch (const std::exception& e) {
    // The sessions stay in memory and dirty: the next checkpoint tries again.
    log_error(std::string("checkpoint failed: ") + e.what());
    if (force) throw;
  }
}

void ServeEngine::publish_gauges() {
  ServeGauges g;
  for (const auto& [id, s] : sessions_.in_memory())
    g.queued_prompts += static_cast<int64_t>(s.queue.size() + s.chunk.size() - std::min(s.chunk.size(), s.chunk_pos));
  g.decode_rows = static_cast<int64_t>(rows());
  g.waiting_requests = static_cast<int64_t>(waiting_.size());
  g.sessions_in_memory = static_cast<int64_t>(sessions_.in_memory().size());
  metrics_.set_gauges(g);
}

void ServeEngine::run() {
  sessions_.get("tlm");
  for (;;) {
    std::vector<Waiting> arrived;
    std::vector<std::unique_ptr<Task>> tasks;
    bool stopping = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      arrived.swap(inbox_);
      tasks.swap(tasks_);
      stopping = stopping_;
    }
    for (Waiting& w : arrived) waiting_.push_back(std::move(w));
    for (auto& t : tasks) {
      try {
        t->result.set_value(t->run());
      } catch (...) {
        t->result.set_exception(std::current_exception());
      }
    }
    bool busy = admit();
    busy |= decode();
    if (!stopping) busy |= learn();
    maybe_checkpoint(false);
    publish_gauges();
    if (stopping && waiting_.empty() && groups_.empty()) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (inbox_.empty() && tasks_.empty()) break;
      continue;
    }
    if (!busy) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(200),
                     [&] { return !inbox_.empty() || !tasks_.empty() || stopping_ != stopping; });
    }
  }
  maybe_checkpoint(true);
}

}  // namespace tlm
