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
      options_(options), stop_ids_(std::move(stop_ids)), metrics_(metrics), batch_(model, stop_ids_) {
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

// Queues `item` for the engine thread and waits for the result it sets.
template <class Item>
nlohmann::json ServeEngine::hand_over(std::vector<std::unique_ptr<Item>>& queue, std::unique_ptr<Item> item) {
  std::future<nlohmann::json> result = item->result.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue.push_back(std::move(item));
  }
  wake_.notify_one();
  return result.get();
}

nlohmann::json ServeEngine::call(std::function<nlohmann::json()> task) {
  auto t = std::make_unique<Task>();
  t->run = std::move(task);
  return hand_over(tasks_, std::move(t));
}

void ServeEngine::add_call(const std::string& name, ReplicatedCall call) { handlers_[name] = std::move(call); }

nlohmann::json ServeEngine::call_everywhere(const std::string& name, nlohmann::json arg) {
  TLM_CHECK(handlers_.count(name), "serve: no replicated call '", name, "'");
  auto c = std::make_unique<PendingCall>();
  c->name = name;
  c->arg = std::move(arg);
  return hand_over(calls_, std::move(c));
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

size_t ServeEngine::rows() const { return batch_.size(); }

void ServeEngine::use(const AdapterSnapshot& params) {
  trainable_.clear_row_states();
  trainable_.set_enabled(params != nullptr);
  if (params) sessions_.load_live(params);
}

// The batch's rows in order, each with its snapshot: one state for all is the plain path (the
// live tensors); rows of several states decode with per-row adapters.
void ServeEngine::use_rows() {
  std::vector<AdapterSnapshot> states;
  for (uint64_t id : batch_.ids()) states.push_back(rows_.at(id).params);
  const bool one = std::all_of(states.begin(), states.end(), [&](const AdapterSnapshot& p) { return p == states[0]; });
  metrics_.record_decode_step(!one);
  if (one) return use(states[0]);
  trainable_.set_enabled(true);
  trainable_.use_row_states(states);
}

bool ServeEngine::admit() {
  bool any = false;
  while (!waiting_.empty() && rows() < static_cast<size_t>(options_.max_batch_rows)) {
    Waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    any = true;
    Active& a = w.active;
    try {
      if (a.job.ref.kind != ModelRef::Base) {
        const Session& s = sessions_.get(a.job.ref.id());
        a.session = s.id;
        a.params = s.params;
      }
    } catch (const std::exception& e) {
      log_error(std::string("request refused: ") + e.what());
      a.channel->finish(false, e.what());
      continue;
    }
    try {
      use(a.params);
      const ServeJob& job = a.job;
      const DecodeEvent e = batch_.join(w.id, job.prompt, job.max_tokens, job.sampling);
      metrics_.record_first_token(seconds_since(a.channel->submitted));
      rows_.emplace(w.id, std::move(a));
      deliver(e);
    } catch (const std::exception& e) {
      log_error(std::string("prefill failed: ") + e.what());
      batch_.remove(w.id);
      if (rows_.count(w.id)) complete(w.id, false, e.what());
      else a.channel->finish(false, e.what());
    }
  }
  return any;
}

void ServeEngine::deliver(const DecodeEvent& e) {
  Active& a = rows_.at(e.id);
  if (e.token >= 0) {
    a.channel->push(e.token);
    ++a.generated;
  }
  if (e.finished) complete(e.id, e.stopped);
}

void ServeEngine::complete(uint64_t id, bool stopped, const std::string& error) {
  auto it = rows_.find(id);
  if (it == rows_.end()) return;
  Active a = std::move(it->second);
  rows_.erase(it);
  metrics_.record_tokens(static_cast<int64_t>(a.job.prompt.size()), a.generated);
  if (a.params && error.empty()) {
    // Answered: the prompt joins its session's learning queue (the online rule: answer, then learn).
    try {
      Session& s = sessions_.get(a.session);
      ++s.requests;
      if (options_.learn) s.queue.push_back(a.job.prompt);
      s.dirty = true;
    } catch (const std::exception& e) {
      log_error("session " + a.session + ": " + e.what() + "; this prompt is not learned");
    }
  }
  a.channel->finish(stopped, error);
}

void ServeEngine::fail_all(const std::string& error) {
  std::vector<uint64_t> ids;
  for (const auto& [id, a] : rows_) ids.push_back(id);
  for (uint64_t id : ids) {
    batch_.remove(id);
    complete(id, false, error);
  }
}

bool ServeEngine::decode() {
  if (batch_.empty()) return false;
  try {
    use_rows();
    const std::vector<DecodeEvent> events = batch_.step();
    trainable_.clear_row_states();
    for (const DecodeEvent& e : events) deliver(e);
  } catch (const std::exception& e) {
    trainable_.clear_row_states();
    log_error(std::string("decode step failed: ") + e.what());
    fail_all(e.what());
  }
  return true;
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
    trainable_.clear_row_states();
    trainable_.set_enabled(true);
    sessions_.begin_step(s);
    rec = learner_.train_step(batch, schedule.lr(static_cast<int64_t>(begin / bs)));
    bool changed = rec.updated;
    for (const GuardEvent& e : sessions_.guard_step(s, rec)) {
      metrics_.record_guard_event(e.kind);
      changed |= CollapseGuards::restores(e);
    }
    sessions_.end_step(s, changed);
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

bool ServeEngine::checkpoint_due() const {
  if (!sessions_.persistent()) return false;
  const bool by_steps = options_.checkpoint_every_steps > 0 && steps_since_save_ >= options_.checkpoint_every_steps;
  const bool by_time = options_.checkpoint_every_seconds > 0 && seconds_since(last_save_) >= options_.checkpoint_every_seconds;
  return by_steps || by_time;
}

void ServeEngine::checkpoint(bool force) {
  if (!sessions_.persistent()) return;
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

// Rank 0: what arrived (waiting at most 200 ms when the last turn had nothing to do), what
// was cancelled, the calls to run everywhere, and the decisions that depend on time or on
// clients. Tasks (rank 0 only) run here. Elsewhere: an empty tick, replaced by rank 0's.
ServeTick ServeEngine::gather(bool idle, std::vector<std::unique_ptr<PendingCall>>& calls) {
  ServeTick t;
  if (!root()) return t;
  std::vector<std::unique_ptr<Task>> tasks;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (idle)
      wake_.wait_for(lock, std::chrono::milliseconds(200),
                     [&] { return !inbox_.empty() || !tasks_.empty() || !calls_.empty() || stopping_; });
    for (Waiting& w : inbox_) {
      t.arrived.push_back({w.id, w.active.job});
      arrived_.push_back(std::move(w));
    }
    inbox_.clear();
    tasks.swap(tasks_);
    calls.swap(calls_);
    t.stopping = stopping_;
  }
  for (auto& task : tasks) {
    try {
      task->result.set_value(task->run());
    } catch (...) {
      task->result.set_exception(std::current_exception());
    }
  }
  for (const auto& c : calls) t.calls.push_back({c->name, c->arg});
  for (const Waiting& w : waiting_)
    if (w.active.channel->cancelled()) t.cancelled.push_back(w.id);
  for (const Waiting& w : arrived_)
    if (w.active.channel->cancelled()) t.cancelled.push_back(w.id);
  for (const auto& [id, a] : rows_)
    if (a.channel->cancelled()) t.cancelled.push_back(id);
  t.checkpoint = checkpoint_due();
  t.exit = t.stopping && t.arrived.empty() && t.calls.empty() && waiting_.empty() && rows_.empty();
  return t;
}

// The tick's arrivals join the queue (elsewhere than rank 0 with channels that go nowhere);
// cancelled requests leave the queue or the batch.
void ServeEngine::apply_arrivals(const ServeTick& t) {
  if (root()) {
    for (Waiting& w : arrived_) waiting_.push_back(std::move(w));
    arrived_.clear();
  } else {
    for (const ServeTick::Arrival& a : t.arrived)
      waiting_.push_back({a.id, Active{std::make_shared<RequestChannel>(), a.job, 0, "", nullptr}});
  }
  for (uint64_t id : t.cancelled) {
    auto w = std::find_if(waiting_.begin(), waiting_.end(), [&](const Waiting& x) { return x.id == id; });
    if (w != waiting_.end()) {
      w->active.channel->finish(false);
      waiting_.erase(w);
    } else if (rows_.count(id)) {
      batch_.remove(id);
      complete(id, false);
    }
  }
}

void ServeEngine::run_calls(const ServeTick& t, std::vector<std::unique_ptr<PendingCall>>& calls) {
  for (size_t i = 0; i < t.calls.size(); ++i) {
    const ServeTick::Call& c = t.calls[i];
    try {
      auto h = handlers_.find(c.name);
      TLM_CHECK(h != handlers_.end(), "serve: no replicated call '", c.name, "'");
      nlohmann::json r = h->second(c.arg, root());
      if (root()) calls.at(i)->result.set_value(std::move(r));
    } catch (...) {
      if (root()) calls.at(i)->result.set_exception(std::current_exception());
    }
  }
}

void ServeEngine::run() {
  sessions_.get("tlm");
  bool busy = true;
  for (;;) {
    std::vector<std::unique_ptr<PendingCall>> calls;
    const ServeTick t = share_tick(gather(!busy, calls), options_.group);
    if (t.exit) break;
    apply_arrivals(t);
    run_calls(t, calls);
    busy = admit();
    busy |= decode();
    if (!t.stopping) busy |= learn();
    if (t.checkpoint) checkpoint(false);
    if (root()) publish_gauges();
  }
  checkpoint(true);
}

}  // namespace tlm
