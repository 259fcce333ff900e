// Dynamic loss scaling for fp16 training with torch.amp.GradScaler's
// semantics, state for state: the loss is multiplied by the scale before
// backward; the gradients are multiplied by the float32 reciprocal of the scale
// and checked for inf/NaN; a step with a non-finite gradient is skipped and the
// scale backs off, and after `growth_interval` clean steps in a row it grows.
// In a data-parallel job the caller combines the found-inf flags of all ranks
// before Update, so every rank skips the same steps. The state (scale, growth
// tracker) is two numbers, saved and restored bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"

namespace clipscale {

struct GradScalerConfig {
  double init_scale = 65536.0;  // 2^16, torch's default
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;

  template <class V>
  void Visit(V& v) {
    v("init_scale", init_scale);
    v("growth_factor", growth_factor);
    v("backoff_factor", backoff_factor);
    v("growth_interval", growth_interval);
  }
};

// init_scale > 0 and finite in float32, growth_factor > 1, backoff_factor in
// (0, 1), growth_interval >= 1 (torch asserts the same).
absl::Status ValidateGradScaler(const GradScalerConfig& config);

struct GradScalerState {
  float scale = 0;
  int32_t growth_tracker = 0;  // clean steps since the last change of scale
};

class GradScaler {
 public:
  explicit GradScaler(const GradScalerConfig& config);

  float scale() const { return state_.scale; }
  const GradScalerState& state() const { return state_; }
  void Restore(const GradScalerState& state) { state_ = state; }

  // loss * scale, as GradScaler.scale (a float32 scalar times the loss).
  torch::Tensor Scale(const torch::Tensor& loss) const;

  // Multiplies every defined gradient in place by 1/scale (the reciprocal taken
  // in double, rounded to float32, as torch does) and returns whether any
  // gradient held an inf or NaN before the multiplication.
  bool UnscaleAndCheck(const std::vector<torch::Tensor>& params) const;
  // The same on the gradient tensors themselves (ZeRO-1: this rank's shard).
  bool UnscaleAndCheckGradients(const std::vector<torch::Tensor>& grads) const;

  // torch._amp_update_scale_: on found_inf the scale is multiplied by
  // backoff_factor and the tracker reset; otherwise the tracker counts up and at
  // growth_interval the scale is multiplied by growth_factor (unless that
  // overflows float32) and the tracker reset.
  void Update(bool found_inf);

 private:
  GradScalerConfig config_;
  GradScalerState state_;
};

}  // namespace clipscale
