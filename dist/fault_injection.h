// Test hook for failure behaviour, passed in through configuration (`tlm adapt --fault-inject
// rank=R,step=S,action=kill|stop|term|throw[,phase=after-forward]`, recipe key
// debug.fault_inject): world rank R, in step S of a job, SIGKILLs itself (a crashed node),
// SIGSTOPs itself (a hung one), SIGTERMs itself (a scheduler's stop) or throws (a failing one),
// by default after the step's update, before it is recorded or checkpointed; with
// phase=after-forward between its forward and backward passes. Empty plan: nothing happens.
#pragma once

#include <cstdint>
#include <string>

namespace tlm {

enum class FaultPhase { AfterUpdate, AfterForward };

struct FaultPlan {
  int rank = -1;
  int64_t step = -1;
  std::string action;  // "" = no fault
  FaultPhase phase = FaultPhase::AfterUpdate;
  bool empty() const { return action.empty(); }
};

// "rank=R,step=S,action=A" -> FaultPlan; "" -> the empty plan. Bad specs fail naming `origin`.
FaultPlan parse_fault_plan(const std::string& spec, const std::string& origin);
void fault_injection_point(const FaultPlan& plan, int world_rank, int64_t step,
                           FaultPhase phase = FaultPhase::AfterUpdate);

}  // namespace tlm
