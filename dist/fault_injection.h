// Test hook for failure behaviour: TLM_FAULT_INJECT="rank=R,step=S,action=kill|stop|term|throw"
// makes world rank R, on reaching step S of a job, SIGKILL itself (a crashed node), SIGSTOP
// itself (a hung one), SIGTERM itself (a scheduler's stop) or throw (a failing one). Unset in production: one getenv per call.
#pragma once

#include <cstdint>

namespace tlm {

void fault_injection_point(int world_rank, int64_t step);

}  // namespace tlm
