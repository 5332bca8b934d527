#include "engine/learn/guards.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/generate/scoring.h"
#include "engine/learn/job_steps.h"

namespace tlm {
namespace {

GuardState capture_copy(const GuardState& s) {
  GuardState c;
  for (const at::Tensor& t : s.params) c.params.push_back(t.clone());
  for (const at::Tensor& t : s.exp_avg) c.exp_avg.push_back(t.clone());
  for (const at::Tensor& t : s.exp_avg_sq) c.exp_avg_sq.push_back(t.clone());
  c.optimizer_steps = s.optimizer_steps;
  return c;
}

}  // namespace

nlohmann::json GuardEvent::to_json() const {
  nlohmann::json j = {{"step", step}, {"event", kind}, {"value", value}, {"limit", limit}};
  if (!owner.empty()) j["session"] = owner;
  return j;
}

CollapseGuards::CollapseGuards(const GuardOptions& options, LlamaModel& model, TrainableSet& trainable, AdamW& optimizer,
                               std::vector<std::vector<int32_t>> probe, int32_t pad, int64_t score_batch,
                               const std::string& events_path, bool writer)
    : options_(options), model_(model), trainable_(trainable), optimizer_(optimizer), probe_(std::move(probe)), pad_(pad),
      score_batch_(score_batch), writer_(writer) {
  TLM_CHECK(options.loss_floor >= 0.0, "guard.loss_floor must be >= 0, got ", options.loss_floor);
  TLM_CHECK(options.loss_average >= 0.0 && options.loss_average < 1.0, "guard.loss_average must be in [0, 1), got ",
            options.loss_average);
  TLM_CHECK(options.reset_every >= 0 && options.probe_every >= 0, "guard.reset_every and guard.probe_every must be >= 0");
  TLM_CHECK(options.probe_tolerance >= 0.0, "guard.probe_tolerance must be >= 0, got ", options.probe_tolerance);
  TLM_CHECK(options.probe_every == 0 || !probe_.empty(),
            "guard.probe_every is set but the probe set is empty (guard.probe_data / --guard-data)");
  fresh_ = capture();
  memory_ = fresh_memory();
  if (!probe_.empty()) {
    trainable_.set_enabled(false);
    probe_base_ = probe_nll();
    trainable_.set_enabled(true);
  }
  events_path_ = events_path;
  if (writer_ && !events_path.empty()) {
    events_.open(events_path, std::ios::trunc);
    TLM_CHECK(events_.good(), events_path, ": cannot write the guard events");
  }
}

GuardMemory CollapseGuards::fresh_memory(const std::string& owner) const {
  GuardMemory m;
  m.last_good = capture_copy(fresh_);
  m.owner = owner;
  return m;
}

GuardState CollapseGuards::capture() const {
  GuardState s;
  for (const at::Tensor& p : trainable_.parameters()) s.params.push_back(p.detach().clone());
  for (const at::Tensor& m : optimizer_.exp_avg()) s.exp_avg.push_back(m.clone());
  for (const at::Tensor& v : optimizer_.exp_avg_sq()) s.exp_avg_sq.push_back(v.clone());
  s.optimizer_steps = optimizer_.step_count();
  return s;
}

void CollapseGuards::restore(const GuardState& s) {
  at::NoGradGuard no_grad;
  const std::vector<at::Tensor> params = trainable_.parameters();
  TLM_CHECK(params.size() == s.params.size(), "guards: ", params.size(), " trainables, the saved state has ",
            s.params.size());
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(s.params[i]);
  for (size_t i = 0; i < s.exp_avg.size(); ++i) optimizer_.exp_avg()[i].copy_(s.exp_avg[i]);
  for (size_t i = 0; i < s.exp_avg_sq.size(); ++i) optimizer_.exp_avg_sq()[i].copy_(s.exp_avg_sq[i]);
  optimizer_.set_step_count(s.optimizer_steps);
}

double CollapseGuards::probe_nll() const {
  return mean(mean_token_nll(model_, probe_, score_batch_, pad_));
}

void CollapseGuards::record(const GuardEvent& e) {
  if (writer_ && events_.is_open()) {
    events_ << e.to_json().dump() << "\n";
    events_.flush();
  }
  if (!writer_ || e.kind == "probe passed") return;
  const std::string where = e.owner.empty() ? "" : " of session " + e.owner;
  if (e.kind == "reset (periodic)")
    log_warn(str_cat("guard at step ", e.step, where, ": ", e.kind));
  else
    log_warn(str_cat("guard at step ", e.step, where, ": ", e.kind, " (", fixed(e.value, 4), " vs limit ",
                     fixed(e.limit, 4), ")"));
}

std::vector<GuardEvent> CollapseGuards::after_step(const StepRecord& step) {
  std::vector<GuardEvent> events;
  auto add = [&](const char* kind, double value, double limit) {
    events.push_back({memory_.owner, step.step, kind, value, limit});
    record(events.back());
  };
  GuardMemory& m = memory_;
  if (options_.loss_floor > 0.0 && step.updated) {
    m.average = m.average_set ? options_.loss_average * m.average + (1.0 - options_.loss_average) * step.loss : step.loss;
    m.average_set = true;
    if (m.average < options_.loss_floor) {
      add("reset (loss floor)", m.average, options_.loss_floor);
      restore(fresh_);
      m.average_set = false;
      ++m.resets_floor;
    }
  }
  if (options_.reset_every > 0 && step.step % options_.reset_every == 0) {
    add("reset (periodic)", 0.0, 0.0);
    restore(fresh_);
    m.average_set = false;
    ++m.resets_periodic;
  }
  if (options_.probe_every > 0 && step.step % options_.probe_every == 0) {
    ++m.probes;
    const double nll = probe_nll();
    const double limit = probe_base_ * (1.0 + options_.probe_tolerance);
    if (nll > limit) {
      add("rollback", nll, limit);
      restore(m.last_good);
      ++m.rollbacks;
    } else {
      add("probe passed", nll, limit);
      m.last_good = capture();
    }
  }
  return events;
}

void CollapseGuards::keep_events_until(const std::vector<std::string>& previous, int64_t step) {
  if (!events_.is_open()) return;
  for (const std::string& line : previous) {
    const nlohmann::json e = nlohmann::json::parse(line, nullptr, false);
    if (!e.is_discarded() && e.value("step", int64_t{0}) <= step) events_ << line << "\n";
  }
  events_.flush();
}

std::map<std::string, double> CollapseGuards::step_stats() const {
  const GuardMemory& m = memory_;
  return {{"guard_resets_loss_floor", static_cast<double>(m.resets_floor)},
          {"guard_resets_periodic", static_cast<double>(m.resets_periodic)},
          {"guard_probes", static_cast<double>(m.probes)}, {"guard_rollbacks", static_cast<double>(m.rollbacks)},
          {"guard_loss_average", m.average}, {"guard_loss_average_set", m.average_set ? 1.0 : 0.0}};
}

std::map<std::string, at::Tensor> CollapseGuards::state() const {
  std::map<std::string, at::Tensor> out;
  const std::vector<std::string> names = trainable_.parameter_names();
  for (const auto& [prefix, s] : {std::make_pair(std::string("fresh."), &fresh_), std::make_pair(std::string("last_good."), &memory_.last_good)}) {
    out[prefix + "optimizer_step"] = at::tensor({static_cast<float>(s->optimizer_steps)});  // exact below 2^24
    for (size_t i = 0; i < names.size(); ++i) {
      out[prefix + names[i]] = trainable_.assemble_full(i, s->params[i]);
      out[prefix + "exp_avg." + names[i]] = trainable_.assemble_full(i, s->exp_avg[i]);
      out[prefix + "exp_avg_sq." + names[i]] = trainable_.assemble_full(i, s->exp_avg_sq[i]);
    }
  }
  return out;
}

void CollapseGuards::load_state(const std::map<std::string, at::Tensor>& state,
                                const std::map<std::string, std::vector<double>>& stats, const std::string& source) {
  auto stat = [&](const std::string& name) {
    auto it = stats.find(name);
    TLM_CHECK(it != stats.end() && !it->second.empty(), source, ": no stats/", name,
              " (saved by a job without these guards?)");
    return it->second.back();
  };
  memory_.resets_floor = static_cast<int64_t>(stat("guard_resets_loss_floor"));
  memory_.resets_periodic = static_cast<int64_t>(stat("guard_resets_periodic"));
  memory_.probes = static_cast<int64_t>(stat("guard_probes"));
  memory_.rollbacks = static_cast<int64_t>(stat("guard_rollbacks"));
  memory_.average = stat("guard_loss_average");
  memory_.average_set = stat("guard_loss_average_set") != 0.0;
  auto get = [&](const std::string& name) -> const at::Tensor& {
    auto it = state.find(name);
    TLM_CHECK(it != state.end(), source, ": the collapse guards' state lacks 'guard.", name,
              "' (saved by a job without these guards?)");
    return it->second;
  };
  const std::vector<std::string> names = trainable_.parameter_names();
  at::NoGradGuard no_grad;
  for (const auto& [prefix, s] : {std::make_pair(std::string("fresh."), &fresh_), std::make_pair(std::string("last_good."), &memory_.last_good)}) {
    s->optimizer_steps = static_cast<int64_t>(get(prefix + "optimizer_step").item<float>());
    for (size_t i = 0; i < names.size(); ++i) {
      for (auto [tag, dst] : {std::make_pair("", &s->params[i]), std::make_pair("exp_avg.", &s->exp_avg[i]),
                              std::make_pair("exp_avg_sq.", &s->exp_avg_sq[i])}) {
        const at::Tensor& full = get(prefix + tag + names[i]);
        TLM_CHECK(full.sizes().vec() == trainable_.full_shape(i), source, ": guard.", prefix, tag, names[i],
                  " has shape ", full.sizes(), ", the trainable needs ", at::IntArrayRef(trainable_.full_shape(i)));
        *dst = trainable_.local_part(i, full.to(dst->device(), dst->scalar_type())).clone();
      }
    }
  }
}

nlohmann::json CollapseGuards::summary() const {
  const GuardMemory& m = memory_;
  nlohmann::json j = {{"resets_loss_floor", m.resets_floor}, {"resets_periodic", m.resets_periodic},
                      {"probes", m.probes}, {"rollbacks", m.rollbacks}, {"options", {
                          {"loss_floor", options_.loss_floor}, {"loss_average", options_.loss_average},
                          {"reset_every", options_.reset_every}, {"probe_data", options_.probe_data},
                          {"probe_every", options_.probe_every}, {"probe_tolerance", options_.probe_tolerance},
                          {"probe_samples", options_.probe_samples}}}};
  if (!probe_.empty()) j["probe_nll_base"] = probe_base_;
  return j;
}

}  // namespace tlm
