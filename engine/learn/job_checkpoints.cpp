#include "engine/learn/job_checkpoints.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <chrono>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "dist/gather_objects.h"
#include "engine/learn/guards.h"
#include "engine/common/error.h"
#include "engine/common/log.h"

namespace tlm {

void JobCheckpoints::claim_directory(bool resuming) const {
  if (!enabled() || !grid_.is_root()) return;
  const std::string& dir = options_.directory;
  TLM_CHECK(!std::filesystem::exists(dir) || std::filesystem::is_directory(dir), dir,
            ": --checkpoint-dir names something that is not a folder");
  if (!std::filesystem::is_directory(dir)) return;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {  // saves a kill cut short
    const std::string name = e.path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (!is_temporary_checkpoint_name(name) || at == std::string::npos) continue;
    const long pid = std::strtol(name.c_str() + at + 5, nullptr, 10);
    if (pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)) continue;  // still writing
    std::error_code ignored;
    std::filesystem::remove(e.path(), ignored);
    log_info(str_cat("removed ", e.path().string(), ": a temporary file of a save that did not finish"));
  }
  const auto found = list_checkpoints(dir);
  if (resuming || found.empty()) return;
  if (options_.fresh) {
    for (const auto& [step, path] : found) std::filesystem::remove(path);
    log_warn(str_cat("--checkpoint-fresh: deleted the ", found.size(), " checkpoints in ", dir));
    return;
  }
  const std::string& newest = found.back().second;
  std::string theirs = "(unreadable)";
  bool same = false;
  try {
    const CheckpointState s = AdapterCheckpoint::load(newest);
    same = s.stream_identity == stream_identity_ && s.identity.method_json == identity_.method_json &&
           s.identity.base_config_hash == identity_.base_config_hash &&
           s.identity.base_weights_hash == identity_.base_weights_hash;
    theirs = str_cat("stream '", s.stream_identity, "', base ", s.identity.base_model_path, ", method ",
                     s.identity.method_json);
  } catch (const Error& e) {
    theirs = str_cat("(", e.what(), ")");
  }
  TLM_CHECK(!same, dir, " already holds checkpoints of this job (newest ", newest, "): continue it with --resume ",
            "latest, or start over with --checkpoint-fresh (deletes them)");
  TLM_FAIL(dir, " holds checkpoints of another job (", found.size(), ", newest ", newest, ": ", theirs,
           "); this job reads '", stream_identity_, "': give it its own --checkpoint-dir, or --checkpoint-fresh to ",
           "delete them");
}

namespace {
std::atomic<bool> g_stop_requested{false};
}  // namespace

void request_stop() { g_stop_requested.store(true); }

bool stop_requested_in(Communicator& group) { return any_rank(g_stop_requested.load(), group); }

bool JobCheckpoints::stop_agreed() const { return any_rank(g_stop_requested.load(), *grid_.host_world); }

void JobCheckpoints::restore(const CheckpointState& state, const std::string& source) {
  stats_ = state.stats;
  scheduler_state_ = state.scheduler_state;
  last_saved_step_ = state.global_step;
  RngState rng{state.rng_state, state.device_rng_kind, state.device_rng_state};
  const nlohmann::json ranks = nlohmann::json::parse(state.rank_rng_states.empty() ? "[]" : state.rank_rng_states,
                                                     nullptr, /*allow_exceptions=*/false);
  TLM_CHECK(ranks.is_array(), source, ": /state rank_rng_states is not a JSON array");
  if (static_cast<int>(ranks.size()) == grid_.world_size) {
    const nlohmann::json& mine = ranks[static_cast<size_t>(grid_.world_rank)];
    rng = {mine.value("cpu", ""), mine.value("device_kind", ""), mine.value("device", "")};
  } else if (!ranks.empty() && grid_.is_root()) {
    log_info(str_cat(source, ": saved by ", ranks.size(), " ranks, resumed on ", grid_.world_size,
                     ": every rank continues rank 0's random generators"));
  }
  restore_rng_state(rng, grid_.device, source);
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& directory) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!std::filesystem::is_directory(directory)) return found;
  for (const auto& e : std::filesystem::directory_iterator(directory)) {
    const std::string name = e.path().filename().string();
    if (is_temporary_checkpoint_name(name) || name.rfind("step-", 0) != 0 || e.path().extension() != ".h5") continue;
    const std::string digits = name.substr(5, name.size() - 8);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string find_resume_checkpoint(const std::string& spec, const std::string& directory) {
  if (spec != "latest") return spec;
  TLM_CHECK(!directory.empty(), "--resume latest needs --checkpoint-dir");
  std::vector<std::pair<int64_t, std::string>> found = list_checkpoints(directory);
  std::reverse(found.begin(), found.end());
  for (const auto& [step, path] : found) {
    const VerifyReport r = AdapterCheckpoint::verify(path);
    if (r.ok) return path;
    log_warn(str_cat("--resume latest: skipping ", path, ": ", r.problems.empty() ? "" : r.problems.front()));
  }
  TLM_FAIL("--resume latest: no checkpoint in ", directory, " verifies (", found.size(), " found)");
}

void apply_checkpoint(const CheckpointState& state, const CheckpointIdentity& expected,
                      const std::string& stream_identity, TrainableSet& trainable, AdamW& optimizer,
                      const std::string& path, bool ignore_base_mismatch) {
  const CheckpointIdentity& saved_id = state.identity;
  std::string what;
  if (saved_id.base_config_hash != expected.base_config_hash)
    what = str_cat(path, ": saved for a base model with config fingerprint ", saved_id.base_config_hash, " (",
                   saved_id.base_model_path, "), this job's model has ", expected.base_config_hash, " (",
                   expected.base_model_path, ")");
  else if (!saved_id.base_weights_hash.empty() && saved_id.base_weights_hash != expected.base_weights_hash)
    // Checkpoints written before the weights were fingerprinted have none: config only.
    what = str_cat(path, ": saved for a base model whose weights have fingerprint ", saved_id.base_weights_hash, " (",
                   saved_id.base_model_path, "), this job's weights have ", expected.base_weights_hash, " (",
                   expected.base_model_path, "): the same config, other weights");
  if (!what.empty()) {
    TLM_CHECK(ignore_base_mismatch, what, "; pass --resume-ignore-base to load it anyway");
    log_warn("RESUMING ONTO A DIFFERENT BASE MODEL (--resume-ignore-base): " + what);
  }
  const nlohmann::json saved = nlohmann::json::parse(state.identity.method_json, nullptr, false);
  const nlohmann::json now = nlohmann::json::parse(expected.method_json);
  TLM_CHECK(!saved.is_discarded(), path, ": the method attribute is not JSON");
  // Checkpoints written before the trainable-set seam hold LoRA without saying so.
  const std::string saved_kind = saved.value("trainable", "lora"), now_kind = now.value("trainable", "lora");
  TLM_CHECK(saved_kind == now_kind, path, ": method 'trainable' is \"", saved_kind, "\" in the checkpoint but \"",
            now_kind, "\" in this job");
  std::vector<const char*> keys = {"mode"};
  if (now_kind == "lora") keys.insert(keys.end(), {"lora_rank", "lora_alpha", "lora_targets"});
  else keys.push_back("norm_targets");
  for (const char* key : keys) {
    TLM_CHECK(saved.contains(key) && saved[key] == now[key], path, ": method '", key,
              "' is ", !saved.contains(key) ? "missing" : saved[key].dump(),
              " in the checkpoint but ", now[key].dump(), " in this job");
  }
  TLM_CHECK(state.stream_identity == stream_identity, path, ": saved for stream '", state.stream_identity,
            "', this job reads '", stream_identity, "'");
  trainable.load_full_state(state.adapter, path);
  const std::vector<std::string> names = trainable.parameter_names();
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::vector<int64_t> full_shape = trainable.full_shape(i);
    auto m = state.exp_avg.find(names[i]);
    auto v = state.exp_avg_sq.find(names[i]);
    TLM_CHECK(m != state.exp_avg.end() && v != state.exp_avg_sq.end(), path, ": no AdamW moments for '",
              names[i], "'");
    TLM_CHECK(m->second.sizes() == v->second.sizes() &&
                  m->second.sizes().vec() == full_shape,
              path, ": moments of '", names[i], "' have shape ", m->second.sizes(), ", the adapter needs ",
              at::IntArrayRef(full_shape));
    optimizer.exp_avg()[i].copy_(trainable.local_part(i, m->second));
    optimizer.exp_avg_sq()[i].copy_(trainable.local_part(i, v->second));
  }
  optimizer.set_step_count(state.optimizer_step);
}

JobCheckpoints::JobCheckpoints(CheckpointOptions options, CheckpointIdentity identity,
                               std::string stream_identity, const ProcessGrid& grid, const Objective* objective)
    : options_(std::move(options)), identity_(std::move(identity)),
      stream_identity_(std::move(stream_identity)), grid_(grid), objective_(objective) {
  TLM_CHECK(options_.every_steps >= 0 && options_.keep_last >= 0 && options_.every_seconds >= 0,
            "checkpoint every_steps, every_seconds and keep_last must be >= 0");
}

namespace {

std::string generator_hex(const at::Generator& generator) {
  at::Generator gen = generator;
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state().contiguous();
  }
  static const char* digits = "0123456789abcdef";
  std::string hex;
  const uint8_t* p = state.data_ptr<uint8_t>();
  for (int64_t i = 0; i < state.numel(); ++i) {
    hex += digits[p[i] >> 4];
    hex += digits[p[i] & 15];
  }
  return hex;
}

void set_generator_hex(const at::Generator& generator, const std::string& hex, const std::string& what) {
  TLM_CHECK(hex.size() % 2 == 0 && hex.find_first_not_of("0123456789abcdef") == std::string::npos, what,
            " is not hex bytes");
  at::Tensor state = at::empty({static_cast<int64_t>(hex.size() / 2)}, at::kByte);
  uint8_t* p = state.data_ptr<uint8_t>();
  for (size_t i = 0; i < hex.size(); i += 2) p[i / 2] = static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16));
  at::Generator gen = generator;
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

bool has_own_generator(const c10::Device& device) { return !device.is_cpu() && !device.is_meta(); }

}  // namespace

RngState capture_rng_state(const c10::Device& device) {
  RngState s;
  s.cpu = generator_hex(at::detail::getDefaultCPUGenerator());
  if (has_own_generator(device)) {
    s.device_kind = c10::DeviceTypeName(device.type(), /*lower_case=*/true);
    s.device = generator_hex(at::globalContext().defaultGenerator(device));
  }
  return s;
}

void restore_rng_state(const RngState& state, const c10::Device& device, const std::string& source) {
  if (!state.cpu.empty()) set_generator_hex(at::detail::getDefaultCPUGenerator(), state.cpu, source + ": /state rng_state");
  const std::string kind = has_own_generator(device) ? c10::DeviceTypeName(device.type(), true) : "";
  if (!kind.empty() && state.device_kind == kind) {
    set_generator_hex(at::globalContext().defaultGenerator(device), state.device, source + ": /state device_rng_state");
  } else if (kind != state.device_kind) {
    log_info(str_cat(source, ": saved by a job on ", state.device_kind.empty() ? "cpu" : state.device_kind,
                     ", resumed on ", device, ": the ", kind.empty() ? "saved device" : kind,
                     " generator is not restored (LoRA dropout draws differ from an uninterrupted run there)"));
  }
}

void JobCheckpoints::after_step(const StepRecord& step, int64_t samples_consumed,
                                const std::string& scheduler_state, TrainableSet& trainable, AdamW& optimizer) {
  if (!enabled()) return;
  scheduler_state_ = scheduler_state;
  double ce = 0, coeff = 0;
  int64_t selected = 0;
  for (size_t i = 0; i < step.ce.size(); ++i) {
    ce += step.ce[i];
    coeff += step.coeff[i];
    selected += step.selected[i] ? 1 : 0;
  }
  const double n = step.ce.empty() ? 1.0 : static_cast<double>(step.ce.size());
  stats_["step"].push_back(static_cast<double>(step.step));
  stats_["samples"].push_back(static_cast<double>(step.ce.size()));
  stats_["selected"].push_back(static_cast<double>(selected));
  stats_["ce_mean"].push_back(ce / n);
  stats_["coeff_mean"].push_back(coeff / n);
  stats_["loss"].push_back(step.loss);
  stats_["lr"].push_back(step.lr);
  stats_["grad_norm"].push_back(step.grad_norm);
  stats_["updated"].push_back(step.updated ? 1.0 : 0.0);
  if (guards_)
    for (const auto& [name, value] : guards_->step_stats()) stats_[name].push_back(value);
  for (const auto& [name, values] : step.extra) {
    double sum = 0;
    for (double v : values) sum += v;
    stats_[name + "_mean"].push_back(values.empty() ? 0.0 : sum / static_cast<double>(values.size()));
  }
  bool due = options_.every_steps > 0 && step.step % options_.every_steps == 0;
  if (!due && options_.every_seconds > 0) {
    // Clocks differ between ranks and the save is collective: rank 0's clock decides.
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_time_).count();
    at::Tensor flag = at::tensor({static_cast<int64_t>(elapsed >= options_.every_seconds ? 1 : 0)}, at::kLong);
    grid_.host_world->broadcast(flag, 0);
    due = flag.item<int64_t>() != 0;
  }
  if (due) save(step.step, samples_consumed, trainable, optimizer);
}

void JobCheckpoints::finish(int64_t samples_consumed, int64_t steps, TrainableSet& trainable, AdamW& optimizer) {
  if (enabled() && last_saved_step_ != steps) save(steps, samples_consumed, trainable, optimizer);
}

void JobCheckpoints::save(int64_t step, int64_t samples_consumed, TrainableSet& trainable, AdamW& optimizer) {
  const auto start = std::chrono::steady_clock::now();
  CheckpointState s;
  s.identity = identity_;
  s.adapter = trainable.full_state();  // collective over TP
  if (objective_) s.method_state = objective_->state();  // collective over TP
  if (guards_)
    for (auto& [name, t] : guards_->state()) s.method_state["guard." + name] = t;  // collective over TP
  const std::vector<std::string> names = trainable.parameter_names();
  for (size_t i = 0; i < names.size(); ++i) {
    s.exp_avg[names[i]] = trainable.assemble_full(i, optimizer.exp_avg()[i]);
    s.exp_avg_sq[names[i]] = trainable.assemble_full(i, optimizer.exp_avg_sq()[i]);
  }
  s.optimizer_step = optimizer.step_count();
  s.global_step = step;
  s.samples_consumed = samples_consumed;
  s.stream_identity = stream_identity_;
  s.stream_offset = samples_consumed;
  s.stats = stats_;
  s.scheduler_state = scheduler_state_;
  const RngState rng = capture_rng_state(grid_.device);
  s.rng_state = rng.cpu;
  s.device_rng_kind = rng.device_kind;
  s.device_rng_state = rng.device;
  nlohmann::json ranks = nlohmann::json::array();
  for (const std::string& r : all_gather_strings({nlohmann::json{{"cpu", rng.cpu}, {"device_kind", rng.device_kind},
                                                                   {"device", rng.device}}.dump()},
                                                 grid_.host_world))
    ranks.push_back(nlohmann::json::parse(r));
  s.rank_rng_states = ranks.dump();
  last_saved_step_ = step;
  last_save_time_ = std::chrono::steady_clock::now();
  if (!grid_.is_root()) return;
  const std::string path = (std::filesystem::path(options_.directory) / ("step-" + std::to_string(step) + ".h5")).string();
  AdapterCheckpoint::save_atomic(path, s, options_.pause_before_rename);
  // The newest keep_last of the folder stay, those of the run before a resume included.
  const auto all = list_checkpoints(options_.directory);
  for (size_t i = 0; options_.keep_last > 0 && i + static_cast<size_t>(options_.keep_last) < all.size(); ++i) {
    std::error_code ignored;
    std::filesystem::remove(all[i].second, ignored);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log_info(str_cat("checkpoint ", path, " (step ", step, ", ", samples_consumed, " samples, ",
                   fixed(static_cast<double>(std::filesystem::file_size(path)) / (1024.0 * 1024.0), 2),
                   " MiB) saved in ", fixed(secs, 3), " s"));
}

}  // namespace tlm
