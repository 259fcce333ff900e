#include "train/precision.h"

#include <ATen/autocast_mode.h>

#include "absl/strings/str_cat.h"

namespace clipscale {

absl::StatusOr<Precision> ParsePrecision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "amp_bf16" || name == "amp_bfloat16") return Precision::kAmpBf16;
  if (name == "amp" || name == "amp_fp16") return Precision::kAmpFp16;
  if (name == "pure_bf16") return Precision::kPureBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown precision '", name, "' (fp32, amp_bf16, amp_fp16, pure_bf16)"));
}

c10::ScalarType EmbeddingDtype(Precision precision) {
  switch (precision) {
    case Precision::kAmpBf16:
    case Precision::kPureBf16:
      return c10::ScalarType::BFloat16;
    case Precision::kAmpFp16:
      return c10::ScalarType::Half;
    case Precision::kFp32:
      break;
  }
  return c10::ScalarType::Float;
}

c10::ScalarType WeightDtype(Precision precision) {
  return precision == Precision::kPureBf16 ? c10::ScalarType::BFloat16 : c10::ScalarType::Float;
}

bool UsesAutocast(Precision precision) {
  return precision == Precision::kAmpBf16 || precision == Precision::kAmpFp16;
}

AutocastGuard::AutocastGuard(c10::DeviceType device, c10::ScalarType dtype, bool enabled)
    : active_(enabled), device_(device) {
  if (!active_) return;
  was_enabled_ = at::autocast::is_autocast_enabled(device);
  was_dtype_ = at::autocast::get_autocast_dtype(device);
  at::autocast::set_autocast_enabled(device, true);
  at::autocast::set_autocast_dtype(device, dtype);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_, was_enabled_);
  at::autocast::set_autocast_dtype(device_, was_dtype_);
}

}  // namespace clipscale
