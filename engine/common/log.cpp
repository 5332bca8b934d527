#include "engine/common/log.h"

#include <cstdio>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace tlm {
namespace {

std::string& prefix() {
  static std::string p;
  return p;
}

// Log lines go to stderr: stdout carries command output (JSONL, answers) that scripts parse.
void ensure_pattern() {
  static const bool done = [] {
    spdlog::set_default_logger(spdlog::stderr_color_mt("tlm"));
    spdlog::set_pattern("[tlm %H:%M:%S] %^%l%$: %v");
    return true;
  }();
  (void)done;
}

}  // namespace

void log_info(const std::string& m) {
  ensure_pattern();
  spdlog::info("{}{}", prefix(), m);
}
void log_warn(const std::string& m) {
  ensure_pattern();
  spdlog::warn("{}{}", prefix(), m);
}
void log_error(const std::string& m) {
  ensure_pattern();
  spdlog::error("{}{}", prefix(), m);
}
void set_log_prefix(const std::string& p) { prefix() = p; }
void set_log_info_enabled(bool enabled) {
  ensure_pattern();
  spdlog::set_level(enabled ? spdlog::level::info : spdlog::level::warn);
}

std::string fixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

}  // namespace tlm
