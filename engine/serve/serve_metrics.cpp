#include "engine/serve/serve_metrics.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <sstream>

namespace tlm {
namespace {

constexpr size_t kRecent = 64;

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

const std::vector<double> kLatencyBounds = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};

void header(std::ostringstream& os, const char* name, const char* type, const char* help) {
  os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  for (size_t i = 0; i < bounds_.size(); ++i)
    if (value <= bounds_[i]) ++counts_[i];
  ++counts_.back();
  sum_ += value;
  ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& labels) const {
  std::ostringstream os;
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < bounds_.size(); ++i)
    os << name << "_bucket{" << labels << sep << "le=\"" << number(bounds_[i]) << "\"} " << counts_[i] << "\n";
  os << name << "_bucket{" << labels << sep << "le=\"+Inf\"} " << counts_.back() << "\n";
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  os << name << "_sum" << braces << " " << number(sum_) << "\n";
  os << name << "_count" << braces << " " << count_ << "\n";
  return os.str();
}

ServeMetrics::ServeMetrics() : first_token_(kLatencyBounds) {}

void ServeMetrics::record_request(const std::string& endpoint, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{endpoint, status}];
  auto it = latency_.find(endpoint);
  if (it == latency_.end()) it = latency_.emplace(endpoint, Histogram(kLatencyBounds)).first;
  it->second.observe(seconds);
}

void ServeMetrics::record_tokens(int64_t prompt_tokens, int64_t completion_tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  prompt_tokens_ += static_cast<uint64_t>(prompt_tokens);
  completion_tokens_ += static_cast<uint64_t>(completion_tokens);
}

void ServeMetrics::record_first_token(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  first_token_.observe(seconds);
}

void ServeMetrics::record_learning_step(bool updated, int64_t prompts, int64_t selected, const std::vector<double>& ce) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++steps_;
  updates_ += updated ? 1 : 0;
  learned_ += static_cast<uint64_t>(prompts);
  selected_ += static_cast<uint64_t>(selected);
  for (double c : ce) {
    recent_ce_.push_back(c);
    if (recent_ce_.size() > kRecent) recent_ce_.pop_front();
  }
}

void ServeMetrics::record_guard_event(const std::string& kind) {
  // "reset (loss floor)" -> reset_loss_floor: a label value without spaces or brackets.
  std::string label;
  for (char c : kind)
    if (std::isalnum(static_cast<unsigned char>(c))) label += c;
    else if (c == ' ' && !label.empty() && label.back() != '_') label += '_';
  std::lock_guard<std::mutex> lock(mutex_);
  ++guard_events_[label];
}

void ServeMetrics::record_decode_step(bool mixed) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++decode_steps_;
  mixed_decode_steps_ += mixed ? 1 : 0;
}

void ServeMetrics::record_checkpoint() {
  std::lock_guard<std::mutex> lock(mutex_);
  last_checkpoint_ = std::chrono::steady_clock::now();
}

void ServeMetrics::set_gauges(const ServeGauges& gauges) {
  std::lock_guard<std::mutex> lock(mutex_);
  gauges_ = gauges;
}

std::string ServeMetrics::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream os;
  const auto now = std::chrono::steady_clock::now();
  header(os, "tlm_requests_total", "counter", "HTTP requests answered, by endpoint and status");
  for (const auto& [key, n] : requests_)
    os << "tlm_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second << "\"} " << n << "\n";
  header(os, "tlm_request_latency_seconds", "histogram", "seconds from request to last byte, by endpoint");
  for (const auto& [endpoint, h] : latency_) os << h.render("tlm_request_latency_seconds", "endpoint=\"" + endpoint + "\"");
  header(os, "tlm_time_to_first_token_seconds", "histogram", "seconds from submission to the first generated token");
  os << first_token_.render("tlm_time_to_first_token_seconds", "");
  header(os, "tlm_prompt_tokens_total", "counter", "prompt tokens of answered requests");
  os << "tlm_prompt_tokens_total " << prompt_tokens_ << "\n";
  header(os, "tlm_completion_tokens_total", "counter", "tokens generated");
  os << "tlm_completion_tokens_total " << completion_tokens_ << "\n";
  header(os, "tlm_decode_steps_total", "counter", "decode steps of the batch");
  os << "tlm_decode_steps_total " << decode_steps_ << "\n";
  header(os, "tlm_decode_steps_mixed_total", "counter",
         "decode steps whose rows held several adapters (each row with its own LoRA)");
  os << "tlm_decode_steps_mixed_total " << mixed_decode_steps_ << "\n";
  header(os, "tlm_learning_steps_total", "counter", "optimiser steps taken or attempted on served prompts");
  os << "tlm_learning_steps_total " << steps_ << "\n";
  header(os, "tlm_learning_updates_total", "counter", "optimiser steps that updated an adapter");
  os << "tlm_learning_updates_total " << updates_ << "\n";
  header(os, "tlm_learned_prompts_total", "counter", "served prompts learned from");
  os << "tlm_learned_prompts_total " << learned_ << "\n";
  header(os, "tlm_guard_events_total", "counter",
         "collapse guard events on served sessions: resets (loss floor, periodic), probes passed, rollbacks");
  for (const auto& [event, n] : guard_events_) os << "tlm_guard_events_total{event=\"" << event << "\"} " << n << "\n";
  header(os, "tlm_selected_fraction", "gauge", "fraction of learned prompts the objective selected");
  os << "tlm_selected_fraction " << number(learned_ ? static_cast<double>(selected_) / static_cast<double>(learned_) : 0.0) << "\n";
  double mean = std::numeric_limits<double>::quiet_NaN();
  if (!recent_ce_.empty()) {
    mean = 0;
    for (double c : recent_ce_) mean += c;
    mean /= static_cast<double>(recent_ce_.size());
  }
  header(os, "tlm_recent_input_perplexity", "gauge", "exp of the mean input ce of the last 64 learned prompts");
  os << "tlm_recent_input_perplexity " << number(std::exp(mean)) << "\n";
  header(os, "tlm_learning_queue_prompts", "gauge", "answered prompts waiting to be learned");
  os << "tlm_learning_queue_prompts " << gauges_.queued_prompts << "\n";
  header(os, "tlm_decode_rows", "gauge", "requests decoding now");
  os << "tlm_decode_rows " << gauges_.decode_rows << "\n";
  header(os, "tlm_waiting_requests", "gauge", "requests submitted and not yet decoding");
  os << "tlm_waiting_requests " << gauges_.waiting_requests << "\n";
  header(os, "tlm_sessions_in_memory", "gauge", "adapters held in memory (the shared one included)");
  os << "tlm_sessions_in_memory " << gauges_.sessions_in_memory << "\n";
  header(os, "tlm_seconds_since_last_checkpoint", "gauge", "seconds since the last checkpoint (NaN: none yet)");
  os << "tlm_seconds_since_last_checkpoint "
     << number(last_checkpoint_ ? std::chrono::duration<double>(now - *last_checkpoint_).count()
                                : std::numeric_limits<double>::quiet_NaN())
     << "\n";
  header(os, "tlm_uptime_seconds", "gauge", "seconds since the server started");
  os << "tlm_uptime_seconds " << number(std::chrono::duration<double>(now - start_).count()) << "\n";
  return os.str();
}

}  // namespace tlm
