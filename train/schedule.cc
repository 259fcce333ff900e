#include "train/schedule.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace clipscale {

absl::Status ValidateSchedule(const ScheduleConfig& c, int64_t total_steps) {
  if (c.kind != "cosine" && c.kind != "const" && c.kind != "const-cooldown") {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule.kind: '", c.kind, "' is not one of cosine, const, const-cooldown"));
  }
  if (c.lr < 0) return absl::InvalidArgumentError("schedule.lr: must not be negative");
  if (c.warmup_steps < 0 || c.warmup_steps >= total_steps) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule.warmup_steps: ", c.warmup_steps, " must be in [0, total steps ", total_steps, ")"));
  }
  if (c.kind == "const-cooldown" &&
      (c.cooldown_steps <= 0 || c.cooldown_steps > total_steps - c.warmup_steps)) {
    return absl::InvalidArgumentError(absl::StrCat("schedule.cooldown_steps: ", c.cooldown_steps,
                                                   " must be in (0, ", total_steps - c.warmup_steps,
                                                   "]"));
  }
  return absl::OkStatus();
}

double LearningRate(const ScheduleConfig& c, int64_t step, int64_t total_steps) {
  if (step < c.warmup_steps) {
    return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  }
  if (c.kind == "const") return c.lr;
  if (c.kind == "const-cooldown") {
    const int64_t start = total_steps - c.cooldown_steps;
    if (step < start) return c.lr;
    const double e = static_cast<double>(step - start);
    const double es = static_cast<double>(total_steps - start);
    const double decay = std::pow(1.0 - e / es, c.cooldown_power);
    return decay * (c.lr - c.cooldown_end_lr) + c.cooldown_end_lr;
  }
  const double e = static_cast<double>(step - c.warmup_steps);
  const double es = static_cast<double>(total_steps - c.warmup_steps);
  return 0.5 * (1.0 + std::cos(M_PI * e / es)) * c.lr;
}

}  // namespace clipscale
