#include "engine/serve/session_store.h"

#include <algorithm>
#include <filesystem>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/learn/job_checkpoints.h"

namespace tlm {
namespace {

namespace fs = std::filesystem;
const std::string kSessionPrefix = "session-";

std::vector<at::Tensor> clones(const std::vector<at::Tensor>& v) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& t : v) out.push_back(t.detach().clone());
  return out;
}

std::vector<at::Tensor> zeros_like_all(const std::vector<at::Tensor>& v) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& t : v) out.push_back(at::zeros_like(t));
  return out;
}

std::map<std::string, at::Tensor> clones(const std::map<std::string, at::Tensor>& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, t] : m) out[k] = t.detach().clone();
  return out;
}

// step-<k>.h5 files of a folder, by k (temporary files of interrupted saves excluded).
std::vector<std::pair<int64_t, fs::path>> checkpoint_files(const fs::path& folder) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return found;
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (is_temporary_checkpoint_name(name) || name.rfind("step-", 0) != 0 || e.path().extension() != ".h5") continue;
    try {
      found.emplace_back(std::stoll(name.substr(5)), e.path());
    } catch (const std::exception&) {
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

nlohmann::json ids_json(const std::vector<std::vector<int32_t>>& v) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& ids : v) out.push_back(ids);
  return out;
}

}  // namespace

SessionStore::SessionStore(TrainableSet& trainable, TestTimeLearner& learner, CheckpointIdentity identity,
                           SessionStoreOptions options, CollapseGuards* guards)
    : trainable_(trainable), learner_(learner), guards_(guards), identity_(std::move(identity)),
      options_(std::move(options)) {
  TLM_CHECK(options_.max_sessions >= 1, "max_sessions must be >= 1, got ", options_.max_sessions);
  initial_ = live_copy();
  live_ = initial_.get();
}

AdapterSnapshot SessionStore::live_copy() const {
  return std::make_shared<const std::vector<at::Tensor>>(clones(trainable_.parameters()));
}

std::string SessionStore::folder_of(const std::string& id) const {
  const std::string name = id == "tlm" ? "shared" : kSessionPrefix + id.substr(4);
  return (fs::path(options_.checkpoint_dir) / name).string();
}

Session SessionStore::fresh(const std::string& id) const {
  Session s;
  s.id = id;
  s.params = initial_;
  s.exp_avg = zeros_like_all(*initial_);
  s.exp_avg_sq = zeros_like_all(*initial_);
  s.objective_state = clones(learner_.objective().state());
  if (guards_) s.guards = guards_->fresh_memory(id);
  return s;
}

Session* SessionStore::find(const std::string& id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

Session& SessionStore::get(const std::string& id) {
  if (Session* s = find(id)) {
    s->last_used = ++uses_;
    return *s;
  }
  if (static_cast<int64_t>(sessions_.size()) >= options_.max_sessions) evict_one(id);
  const std::string folder = persistent() ? folder_of(id) : "";
  Session s = !folder.empty() && !checkpoint_files(folder).empty() ? load(id, folder) : fresh(id);
  s.last_used = ++uses_;
  return sessions_.emplace(id, std::move(s)).first->second;
}

void SessionStore::evict_one(const std::string& keep) {
  TLM_CHECK(persistent(), "the server holds ", sessions_.size(), " sessions (serve.max_sessions ", options_.max_sessions,
            ") and has no checkpoint folder to move one to: raise serve.max_sessions or set checkpoint.dir");
  Session* lru = nullptr;
  for (auto& [id, s] : sessions_)
    if (id != "tlm" && id != keep && (!lru || s.last_used < lru->last_used)) lru = &s;
  TLM_CHECK(lru, "serve.max_sessions ", options_.max_sessions, " leaves no room for a session besides the shared one");
  save(*lru);  // throws before anything is dropped when the save fails
  log_info("session " + lru->id + " checkpointed and dropped from memory (least recently used)");
  written_.erase(lru->id);
  sessions_.erase(lru->id);
}

std::vector<std::string> SessionStore::ids() const {
  std::vector<std::string> out;
  for (const auto& [id, s] : sessions_) out.push_back(id);
  std::error_code ec;
  if (persistent() && fs::is_directory(options_.checkpoint_dir, ec)) {
    for (const auto& e : fs::directory_iterator(options_.checkpoint_dir)) {
      const std::string name = e.path().filename().string();
      std::string id;
      if (name == "shared") id = "tlm";
      else if (name.rfind(kSessionPrefix, 0) == 0) id = "tlm/" + name.substr(kSessionPrefix.size());
      if (!id.empty() && !sessions_.count(id) && !checkpoint_files(e.path()).empty()) out.push_back(id);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void SessionStore::load_live(const AdapterSnapshot& params) {
  if (params.get() == live_) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> live = trainable_.parameters();
  for (size_t i = 0; i < live.size(); ++i) live[i].copy_((*params)[i]);
  live_ = params.get();
}

void SessionStore::begin_step(Session& s) {
  load_live(s.params);
  AdamW& opt = learner_.optimizer();
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < s.exp_avg.size(); ++i) {
    opt.exp_avg()[i].copy_(s.exp_avg[i]);
    opt.exp_avg_sq()[i].copy_(s.exp_avg_sq[i]);
  }
  opt.set_step_count(s.optimizer_step);
  learner_.set_steps(s.steps);
  learner_.objective().load_state(s.objective_state, s.id);
}

std::vector<GuardEvent> SessionStore::guard_step(Session& s, const StepRecord& step) {
  if (!guards_) return {};
  guards_->swap_memory(s.guards);
  std::vector<GuardEvent> events;
  try {
    events = guards_->after_step(step);
  } catch (...) {
    guards_->swap_memory(s.guards);
    throw;
  }
  guards_->swap_memory(s.guards);
  return events;
}

void SessionStore::end_step(Session& s, bool changed) {
  AdamW& opt = learner_.optimizer();
  if (changed) {
    s.params = live_copy();
    live_ = s.params.get();
    ++s.version;
  }
  s.exp_avg = clones(opt.exp_avg());
  s.exp_avg_sq = clones(opt.exp_avg_sq());
  s.optimizer_step = opt.step_count();
  s.steps = learner_.steps();
  s.objective_state = clones(learner_.objective().state());
  s.dirty = true;
}

void SessionStore::reset_optimizer(Session& s) {
  s.exp_avg = zeros_like_all(s.exp_avg);
  s.exp_avg_sq = zeros_like_all(s.exp_avg_sq);
  s.optimizer_step = 0;
}

void SessionStore::save(Session& s) {
  if (!persistent()) return;
  CheckpointState st;
  st.identity = identity_;
  const std::vector<std::string> names = trainable_.parameter_names();
  for (size_t i = 0; i < names.size(); ++i) {
    st.adapter[names[i]] = trainable_.assemble_full(i, (*s.params)[i]);
    st.exp_avg[names[i]] = trainable_.assemble_full(i, s.exp_avg[i]);
    st.exp_avg_sq[names[i]] = trainable_.assemble_full(i, s.exp_avg_sq[i]);
  }
  st.optimizer_step = s.optimizer_step;
  st.global_step = s.steps;
  st.samples_consumed = s.learned;
  st.stream_identity = stream_identity(s.id);
  st.stream_offset = s.learned;
  st.method_state = s.objective_state;
  if (guards_) {  // as tlm adapt saves its guards: "guard." method state, the counts as stats
    guards_->swap_memory(s.guards);
    for (auto& [name, t] : guards_->state()) st.method_state["guard." + name] = t;
    for (const auto& [name, value] : guards_->step_stats()) st.stats[name] = {value};
    guards_->swap_memory(s.guards);
  }
  const RngState rng = capture_rng_state((*s.params)[0].device());
  st.rng_state = rng.cpu;
  st.device_rng_kind = rng.device_kind;
  st.device_rng_state = rng.device;
  st.scheduler_state = nlohmann::json{{"session", s.id},
                                      {"queue", ids_json({s.queue.begin(), s.queue.end()})},
                                      {"chunk", ids_json(s.chunk)},
                                      {"chunk_pos", s.chunk_pos},
                                      {"requests", s.requests},
                                      {"version", s.version}}
                           .dump();
  s.dirty = false;
  if (!options_.writer) return;
  const fs::path folder = folder_of(s.id);
  std::error_code ec;
  fs::create_directories(folder, ec);
  TLM_CHECK(!ec, folder.string(), ": cannot create the session's checkpoint folder (", ec.message(), ")");
  s.dirty = !options_.replicated;  // until the file is written
  AdapterCheckpoint::save_atomic((folder / ("step-" + std::to_string(s.steps) + ".h5")).string(), st);
  s.dirty = false;
  // Keep the newest keep_last files, whatever run wrote the older ones.
  std::vector<std::pair<int64_t, fs::path>> files = checkpoint_files(folder);
  for (size_t i = 0; options_.keep_last > 0 && i + static_cast<size_t>(options_.keep_last) < files.size(); ++i)
    fs::remove(files[i].second, ec);
}

void SessionStore::save_all() {
  for (auto& [id, s] : sessions_)
    if (s.dirty) save(s);
}

Session SessionStore::load(const std::string& id, const std::string& folder) {
  const std::string path = find_resume_checkpoint("latest", folder);
  const CheckpointState st = AdapterCheckpoint::load(path);
  apply_checkpoint(st, identity_, stream_identity(id), trainable_, learner_.optimizer(), path);
  std::map<std::string, at::Tensor> method_state, guard_state;
  for (const auto& [name, t] : st.method_state)
    (name.rfind("guard.", 0) == 0 ? guard_state[name.substr(6)] : method_state[name]) = t;
  learner_.objective().load_state(method_state, path);
  Session s;
  s.id = id;
  if (guards_) {
    s.guards = guards_->fresh_memory(id);
    if (guard_state.empty()) {
      log_warn(path + ": saved without collapse guards; session " + id + "'s guards start fresh");
    } else {
      guards_->swap_memory(s.guards);
      try {
        guards_->load_state(guard_state, st.stats, path);
      } catch (...) {
        guards_->swap_memory(s.guards);
        throw;
      }
      guards_->swap_memory(s.guards);
    }
  } else if (!guard_state.empty()) {
    log_warn(path + ": saved with collapse guards, which this server does not run; session " + id +
             "'s guard state is dropped");
  }
  s.params = live_copy();
  live_ = s.params.get();
  s.exp_avg = clones(learner_.optimizer().exp_avg());
  s.exp_avg_sq = clones(learner_.optimizer().exp_avg_sq());
  s.optimizer_step = learner_.optimizer().step_count();
  s.objective_state = clones(learner_.objective().state());
  s.steps = st.global_step;
  s.learned = st.samples_consumed;
  const nlohmann::json sched = nlohmann::json::parse(st.scheduler_state, nullptr, false);
  TLM_CHECK(sched.is_object() && sched.value("session", "") == id, path, ": not a checkpoint of session ", id,
            " (scheduler_state ", st.scheduler_state.substr(0, 80), ")");
  for (const auto& ids : sched.at("queue")) s.queue.push_back(ids.get<std::vector<int32_t>>());
  for (const auto& ids : sched.at("chunk")) s.chunk.push_back(ids.get<std::vector<int32_t>>());
  s.chunk_pos = sched.at("chunk_pos").get<size_t>();
  s.requests = sched.at("requests").get<int64_t>();
  s.version = sched.at("version").get<uint64_t>();
  log_info(str_cat("session ", id, " restored from ", path, ": ", s.steps, " steps, ", s.learned, " prompts learned, ",
                   s.queue.size() + (s.chunk.size() - std::min(s.chunk.size(), s.chunk_pos)), " queued"));
  return s;
}

int64_t SessionStore::resume_all() {
  int64_t n = 0;
  for (const std::string& id : ids()) {
    if (sessions_.count(id)) continue;
    if (static_cast<int64_t>(sessions_.size()) >= options_.max_sessions) break;  // the rest load when asked for
    sessions_.emplace(id, load(id, folder_of(id)));
    ++n;
  }
  return n;
}

bool SessionStore::folder_has_sessions() const {
  if (!persistent()) return false;
  std::error_code ec;
  if (!fs::is_directory(options_.checkpoint_dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(options_.checkpoint_dir))
    if (!checkpoint_files(e.path()).empty()) return true;
  return false;
}

}  // namespace tlm
