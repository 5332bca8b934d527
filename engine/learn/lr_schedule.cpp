#include "engine/learn/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "engine/common/error.h"

namespace tlm {

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "cosine") return ScheduleKind::Cosine;
  if (name == "linear") return ScheduleKind::Linear;
  TLM_FAIL("unknown lr schedule '", name, "' (constant, cosine, linear)");
}

std::string schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::Cosine: return "cosine";
    case ScheduleKind::Linear: return "linear";
  }
  return "?";
}

LrSchedule LrSchedule::make(ScheduleKind kind, double base_lr, int64_t total_steps,
                            double warmup_ratio) {
  TLM_CHECK(warmup_ratio >= 0.0 && warmup_ratio <= 1.0, "warmup_ratio must be in [0, 1], got ",
            warmup_ratio);
  LrSchedule s;
  s.kind = kind;
  s.base_lr = base_lr;
  s.total_steps = std::max<int64_t>(1, total_steps);
  s.warmup_steps = kind == ScheduleKind::Constant
                       ? 0
                       : static_cast<int64_t>(std::ceil(static_cast<double>(s.total_steps) * warmup_ratio));
  return s;
}

double LrSchedule::lr(int64_t step) const {
  if (kind == ScheduleKind::Constant) return base_lr;
  if (step < warmup_steps)
    return base_lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  const double done = static_cast<double>(step - warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  if (kind == ScheduleKind::Linear)
    return base_lr * std::max(0.0, static_cast<double>(total_steps - step) / span);
  const double progress = done / span;
  return base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * progress)));
}

}  // namespace tlm
