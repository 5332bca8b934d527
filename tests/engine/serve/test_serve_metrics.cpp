// The /metrics text: Prometheus exposition format (HELP/TYPE lines, cumulative histogram
// buckets ending in +Inf with _sum and _count), the counts recorded. prometheus_client's
// parser reads it in tests/launch/test_serve.py.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/serve/serve_metrics.h"

namespace tlm {
namespace {

TEST(ServeMetrics, HistogramBucketsAreCumulative) {
  Histogram h({1.0, 2.0});
  for (double v : {0.5, 1.5, 1.7, 9.0}) h.observe(v);
  const std::string text = h.render("x_seconds", "k=\"v\"");
  EXPECT_NE(text.find("x_seconds_bucket{k=\"v\",le=\"1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_bucket{k=\"v\",le=\"2\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_count{k=\"v\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_sum{k=\"v\"} 12.7\n"), std::string::npos) << text;
}

TEST(ServeMetrics, RendersWhatWasRecorded) {
  ServeMetrics m;
  m.record_request("chat", 200, 0.3);
  m.record_request("chat", 400, 0.001);
  m.record_tokens(10, 4);
  m.record_learning_step(true, 2, 1, {std::log(4.0), std::log(16.0)});
  ServeGauges g;
  g.queued_prompts = 3;
  m.set_gauges(g);
  const std::string text = m.render();
  for (const std::string& line : std::vector<std::string>
       {"tlm_requests_total{endpoint=\"chat\",status=\"200\"} 1", "tlm_requests_total{endpoint=\"chat\",status=\"400\"} 1",
        "tlm_prompt_tokens_total 10", "tlm_completion_tokens_total 4", "tlm_learning_steps_total 1",
        "tlm_learned_prompts_total 2", "tlm_selected_fraction 0.5", "tlm_recent_input_perplexity 8",
        "tlm_learning_queue_prompts 3", "tlm_seconds_since_last_checkpoint NaN",
        "# TYPE tlm_request_latency_seconds histogram"})
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << "\n" << text;
  m.record_checkpoint();
  EXPECT_EQ(m.render().find("tlm_seconds_since_last_checkpoint NaN"), std::string::npos);
}

TEST(ServeMetrics, GuardEventsByKindFromTheStart) {
  ServeMetrics m;
  EXPECT_NE(m.render().find("tlm_guard_events_total{event=\"rollback\"} 0\n"), std::string::npos) << m.render();
  for (const char* kind : {"reset (loss floor)", "reset (periodic)", "probe passed", "probe passed", "rollback"})
    m.record_guard_event(kind);
  const std::string text = m.render();
  for (const std::string& line : std::vector<std::string>{
           "tlm_guard_events_total{event=\"reset_loss_floor\"} 1", "tlm_guard_events_total{event=\"reset_periodic\"} 1",
           "tlm_guard_events_total{event=\"probe_passed\"} 2", "tlm_guard_events_total{event=\"rollback\"} 1"})
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << "\n" << text;
}

}  // namespace
}  // namespace tlm
