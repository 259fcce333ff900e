// The training loop (single process; the distributed issue extends it):
// init → data/model/optimizer → loop {batch → loss → step → schedule →
// maybe eval} → final eval and weights.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "train/train_config.h"

namespace clipscale {

struct TrainResult {
  int64_t steps = 0;
  double first_loss = 0;  // mean over the first logging window
  double last_loss = 0;   // mean over the last logging window
  double samples_per_second = 0;
  std::map<std::string, double> eval;  // final evaluation (empty without a val split)
  std::string weights_path;            // <output>/model.safetensors (OpenCLIP names)
};

absl::StatusOr<TrainResult> Train(const TrainConfig& config);

}  // namespace clipscale
