#include "dist/fault_injection.h"

#include <csignal>
#include <sstream>
#include <string>

#include <unistd.h>

#include "engine/common/error.h"
#include "engine/common/log.h"

namespace tlm {

FaultPlan parse_fault_plan(const std::string& spec, const std::string& origin) {
  FaultPlan plan;
  if (spec.empty()) return plan;
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto eq = item.find('=');
    TLM_CHECK(eq != std::string::npos, origin, ": '", item, "' is not key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    try {
      if (key == "rank") plan.rank = std::stoi(value);
      else if (key == "step") plan.step = std::stoll(value);
      else if (key == "action") plan.action = value;
      else if (key == "phase" && value == "after-update") plan.phase = FaultPhase::AfterUpdate;
      else if (key == "phase" && value == "after-forward") plan.phase = FaultPhase::AfterForward;
      else if (key == "phase") TLM_FAIL(origin, ": phase must be after-update or after-forward, got '", value, "'");
      else TLM_FAIL(origin, ": unknown key '", key, "' (rank, step, action, phase)");
    } catch (const std::logic_error&) {
      TLM_FAIL(origin, ": ", key, " must be an integer, got '", value, "'");
    }
  }
  TLM_CHECK(plan.action == "kill" || plan.action == "stop" || plan.action == "term" || plan.action == "throw",
            origin, ": action must be kill, stop, term or throw, got '", plan.action, "'");
  TLM_CHECK(plan.rank >= 0 && plan.step >= 1, origin, ": needs rank >= 0 and step >= 1");
  return plan;
}

void fault_injection_point(const FaultPlan& plan, int world_rank, int64_t step, FaultPhase phase) {
  if (plan.empty() || plan.rank != world_rank || plan.step != step || plan.phase != phase) return;
  log_warn(str_cat("fault injection: rank ", world_rank, " ", plan.action, " at step ", step,
                   phase == FaultPhase::AfterForward ? " (after its forward pass)" : ""));
  if (plan.action == "kill") ::kill(::getpid(), SIGKILL);
  else if (plan.action == "stop") ::kill(::getpid(), SIGSTOP);
  else if (plan.action == "term") ::kill(::getpid(), SIGTERM);
  else TLM_FAIL("fault injection: injected failure at step ", step);
}

}  // namespace tlm
