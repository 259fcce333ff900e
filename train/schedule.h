// Learning-rate schedules as pure functions of the step, exactly OpenCLIP's
// (open_clip_train/scheduler.py): linear warmup lr*(step+1)/warmup, then
// cosine to zero, constant, or constant with a polynomial cooldown.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace clipscale {

struct ScheduleConfig {
  std::string kind = "cosine";  // cosine | const | const-cooldown
  double lr = 5e-4;
  int64_t warmup_steps = 100;
  int64_t cooldown_steps = 0;   // const-cooldown only
  double cooldown_power = 1.0;  // 1 = linear
  double cooldown_end_lr = 0.0;

  template <class V>
  void Visit(V& v) {
    v("kind", kind);
    v("lr", lr);
    v("warmup_steps", warmup_steps);
    v("cooldown_steps", cooldown_steps);
    v("cooldown_power", cooldown_power);
    v("cooldown_end_lr", cooldown_end_lr);
  }
};

// Checks the kind and that warmup/cooldown fit in `total_steps`.
absl::Status ValidateSchedule(const ScheduleConfig& config, int64_t total_steps);

// The learning rate at `step` (0-based) of a run of `total_steps` steps.
double LearningRate(const ScheduleConfig& config, int64_t step, int64_t total_steps);

}  // namespace clipscale
