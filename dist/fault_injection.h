// Test hook for failure behaviour, passed in through configuration (`tlm adapt --fault-inject
// rank=R,step=S,action=kill|stop|term|throw`, recipe key debug.fault_inject): world rank R, on
// reaching step S of a job, SIGKILLs itself (a crashed node), SIGSTOPs itself (a hung one),
// SIGTERMs itself (a scheduler's stop) or throws (a failing one). Empty plan: nothing happens.
#pragma once

#include <cstdint>
#include <string>

namespace tlm {

struct FaultPlan {
  int rank = -1;
  int64_t step = -1;
  std::string action;  // "" = no fault
  bool empty() const { return action.empty(); }
};

// "rank=R,step=S,action=A" -> FaultPlan; "" -> the empty plan. Bad specs fail naming `origin`.
FaultPlan parse_fault_plan(const std::string& spec, const std::string& origin);
void fault_injection_point(const FaultPlan& plan, int world_rank, int64_t step);

}  // namespace tlm
