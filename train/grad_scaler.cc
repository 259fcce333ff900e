#include "train/grad_scaler.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace clipscale {

absl::Status ValidateGradScaler(const GradScalerConfig& c) {
  const float init = static_cast<float>(c.init_scale);
  if (!(c.init_scale > 0) || !std::isfinite(init) || init <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grad_scaler.init_scale must be a positive float32, got ", c.init_scale));
  }
  if (!(c.growth_factor > 1.0) || !std::isfinite(c.growth_factor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grad_scaler.growth_factor must be > 1, got ", c.growth_factor));
  }
  if (!(c.backoff_factor > 0.0 && c.backoff_factor < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grad_scaler.backoff_factor must be in (0, 1), got ", c.backoff_factor));
  }
  if (c.growth_interval < 1 || c.growth_interval > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grad_scaler.growth_interval must be a positive int32, got ", c.growth_interval));
  }
  return absl::OkStatus();
}

GradScaler::GradScaler(const GradScalerConfig& config) : config_(config) {
  state_.scale = static_cast<float>(config.init_scale);
}

torch::Tensor GradScaler::Scale(const torch::Tensor& loss) const {
  return loss * torch::tensor(state_.scale, torch::dtype(torch::kFloat32).device(loss.device()));
}

bool GradScaler::UnscaleAndCheck(const std::vector<torch::Tensor>& params) const {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) grads.push_back(p.grad());
  return UnscaleAndCheckGradients(grads);
}

bool GradScaler::UnscaleAndCheckGradients(const std::vector<torch::Tensor>& grads) const {
  torch::NoGradGuard no_grad;
  // GradScaler.unscale_: inv_scale = scale.double().reciprocal().float().
  const float inv_scale = static_cast<float>(1.0 / static_cast<double>(state_.scale));
  torch::Tensor found;  // accumulated on the device: no host sync per tensor
  for (torch::Tensor g : grads) {
    if (!g.defined()) continue;
    torch::Tensor bad = torch::logical_not(torch::isfinite(g)).any();
    found = found.defined() ? torch::logical_or(found, bad) : bad;
    g.mul_(inv_scale);
  }
  return found.defined() && found.item<bool>();
}

void GradScaler::Update(bool found_inf) {
  // Float32 scale times a double factor, rounded back to float32, as
  // _amp_update_scale_cpu_ computes it.
  if (found_inf) {
    state_.scale = static_cast<float>(static_cast<double>(state_.scale) * config_.backoff_factor);
    state_.growth_tracker = 0;
    return;
  }
  const int64_t successful = static_cast<int64_t>(state_.growth_tracker) + 1;
  if (successful == config_.growth_interval) {
    const float grown = static_cast<float>(static_cast<double>(state_.scale) * config_.growth_factor);
    if (std::isfinite(grown)) state_.scale = grown;
    state_.growth_tracker = 0;
  } else {
    state_.growth_tracker = static_cast<int32_t>(successful);
  }
}

}  // namespace clipscale
