// What GET /metrics reports, in Prometheus' text exposition format (version 0.0.4): request
// counts by endpoint and status, prompt and completion tokens, latency and time-to-first-token
// histograms, learning steps and updates, the selected fraction, the stream's recent input
// perplexity, collapse guard events, queue and batch sizes, sessions in memory, and seconds
// since the last checkpoint. Thread-safe: HTTP threads and the engine thread record into it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace tlm {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // "<name>_bucket{<labels>le=...} n", _sum and _count lines.
  std::string render(const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // cumulative per bound, + the +Inf bucket
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct ServeGauges {
  int64_t queued_prompts = 0;   // answered, waiting to be learned (every session)
  int64_t decode_rows = 0;      // requests decoding now
  int64_t waiting_requests = 0; // submitted, not yet admitted
  int64_t sessions_in_memory = 0;
};

class ServeMetrics {
 public:
  ServeMetrics();
  void record_request(const std::string& endpoint, int status, double seconds);
  void record_tokens(int64_t prompt_tokens, int64_t completion_tokens);
  void record_first_token(double seconds);
  // One optimiser step over `prompts` prompts of which `selected` were selected; `ce` their
  // input ce under the model being trained.
  void record_learning_step(bool updated, int64_t prompts, int64_t selected, const std::vector<double>& ce);
  // A collapse guard's event on a served session (GuardEvent::kind, e.g. "reset (loss floor)").
  void record_guard_event(const std::string& kind);
  void record_checkpoint();
  // One decode step of the batch; `mixed`: its rows held more than one adapter state.
  void record_decode_step(bool mixed);
  void set_gauges(const ServeGauges& gauges);
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  Histogram first_token_;
  uint64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  uint64_t steps_ = 0, updates_ = 0, learned_ = 0, selected_ = 0;
  uint64_t decode_steps_ = 0, mixed_decode_steps_ = 0;
  // by event: reset_loss_floor, reset_periodic, probe_passed, rollback (all four from the start)
  std::map<std::string, uint64_t> guard_events_{
      {"reset_loss_floor", 0}, {"reset_periodic", 0}, {"probe_passed", 0}, {"rollback", 0}};
  std::deque<double> recent_ce_;  // the last kRecent learned prompts' ce
  std::optional<std::chrono::steady_clock::time_point> last_checkpoint_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  ServeGauges gauges_;
};

}  // namespace tlm
