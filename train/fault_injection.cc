#include "train/fault_injection.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status.h"

namespace clipscale {

absl::StatusOr<std::optional<FaultPlan>> ParseFaultPlan(const std::string& value) {
  if (value.empty()) return std::nullopt;
  const std::vector<std::string> parts = absl::StrSplit(value, ':');
  FaultPlan plan;
  const bool ok = (parts.size() == 2 || (parts.size() == 3 && parts[2] == "abort")) &&
                  absl::SimpleAtoi(parts[0], &plan.rank) && plan.rank >= 0 &&
                  absl::SimpleAtoi(parts[1], &plan.step) && plan.step >= 0;
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(kFaultAtStepVariable, "='", value,
                                                   "': expected RANK:STEP or RANK:STEP:abort"));
  }
  plan.abort = parts.size() == 3;
  return plan;
}

absl::Status InjectedFault(int rank, int64_t step) {
  static const auto* plan = [] {
    const char* value = std::getenv(kFaultAtStepVariable);
    return new absl::StatusOr<std::optional<FaultPlan>>(ParseFaultPlan(value ? value : ""));
  }();
  if (!plan->ok()) return plan->status();
  const std::optional<FaultPlan>& fault = **plan;
  if (!fault || fault->rank != rank || fault->step != step) return absl::OkStatus();
  const std::string message = absl::StrCat("injected fault (", kFaultAtStepVariable, ") at step ",
                                           step, " on rank ", rank);
  if (fault->abort) FatalError(__FILE__, __LINE__, message);
  return absl::AbortedError(message);
}

}  // namespace clipscale
