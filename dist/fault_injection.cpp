#include "dist/fault_injection.h"

#include <csignal>
#include <cstdlib>
#include <sstream>
#include <string>

#include <unistd.h>

#include "engine/common/error.h"
#include "engine/common/log.h"

namespace tlm {

void fault_injection_point(int world_rank, int64_t step) {
  const char* spec = std::getenv("TLM_FAULT_INJECT");
  if (!spec || !*spec) return;
  int rank = -1;
  int64_t at_step = -1;
  std::string action;
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto eq = item.find('=');
    TLM_CHECK(eq != std::string::npos, "TLM_FAULT_INJECT: '", item, "' is not key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "rank") rank = std::stoi(value);
    else if (key == "step") at_step = std::stoll(value);
    else if (key == "action") action = value;
    else TLM_FAIL("TLM_FAULT_INJECT: unknown key '", key, "'");
  }
  if (rank != world_rank || at_step != step) return;
  log_warn(str_cat("TLM_FAULT_INJECT: rank ", world_rank, " ", action, " at step ", step));
  if (action == "kill") ::kill(::getpid(), SIGKILL);
  else if (action == "stop") ::kill(::getpid(), SIGSTOP);
  else if (action == "term") ::kill(::getpid(), SIGTERM);
  else if (action == "throw") TLM_FAIL("TLM_FAULT_INJECT: injected failure at step ", step);
  else TLM_FAIL("TLM_FAULT_INJECT: action must be kill, stop, term or throw, got '", action, "'");
}

}  // namespace tlm
