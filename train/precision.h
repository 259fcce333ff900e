// Numeric precision of training, with OpenCLIP's `--precision` meanings:
//   fp32       everything in fp32;
//   amp_bf16   fp32 weights, the towers' forward under autocast to bf16;
//   amp_fp16   the same with fp16, and a dynamic loss scale (train/grad_scaler.h);
//   pure_bf16  the weights (and optimizer state) cast to bf16, images fed as bf16.
// In every mode the contrastive loss accumulates in fp32 per tile; the
// embeddings enter it (and are all-gathered) in the mode's dtype.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "absl/status/statusor.h"

namespace clipscale {

enum class Precision { kFp32, kAmpBf16, kAmpFp16, kPureBf16 };

absl::StatusOr<Precision> ParsePrecision(const std::string& name);

// The dtype of the embeddings that enter the loss: bf16, fp16 or fp32.
c10::ScalarType EmbeddingDtype(Precision precision);
// The dtype of the weights and of the images fed to the towers.
c10::ScalarType WeightDtype(Precision precision);
bool UsesAutocast(Precision precision);
inline bool UsesLossScaling(Precision precision) { return precision == Precision::kAmpFp16; }

// While alive, ops on `device` run under autocast to `dtype` (as Python's
// torch.autocast(device, dtype)); restores the previous state and, leaving the
// outermost region, drops autocast's cache of cast weights. Inactive when
// `enabled` is false.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, c10::ScalarType dtype, bool enabled = true);
  AutocastGuard(c10::DeviceType device, Precision precision)
      : AutocastGuard(device, EmbeddingDtype(precision), UsesAutocast(precision)) {}
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_;
  c10::DeviceType device_;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace clipscale
