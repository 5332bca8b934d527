// Learning-rate schedules as transformers' get_*_schedule_with_warmup define them: the
// rate of optimiser step k (0-based) is base_lr * factor(k).
#pragma once

#include <cstdint>
#include <string>

namespace tlm {

enum class ScheduleKind { Constant, Cosine, Linear };

// "constant", "cosine", "linear"; throws listing them otherwise.
ScheduleKind parse_schedule(const std::string& name);
std::string schedule_name(ScheduleKind kind);

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::Constant;
  double base_lr = 5e-5;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;  // transformers: ceil(warmup_ratio * total_steps)

  static LrSchedule make(ScheduleKind kind, double base_lr, int64_t total_steps, double warmup_ratio);
  double lr(int64_t step) const;
};

}  // namespace tlm
