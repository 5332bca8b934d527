// Logging for the engine and the command lines: one line per event on stderr,
// "[tlm HH:MM:SS] level: message". spdlog does the work inside log.cpp only, because
// LibTorch ships its own fmt headers that clash with the system fmt spdlog was built with:
// translation units that include LibTorch must not include spdlog.
#pragma once

#include <string>

namespace tlm {

void log_info(const std::string& message);
void log_warn(const std::string& message);
void log_error(const std::string& message);
// Prepended to every line, e.g. "[rank 1/4] " under MPI.
void set_log_prefix(const std::string& prefix);

// false: info lines are dropped, warnings and errors still print (non-root MPI ranks).
void set_log_info_enabled(bool enabled);

// printf-style number formatting for log lines: fixed(3.14159, 2) == "3.14".
std::string fixed(double value, int digits);

}  // namespace tlm
