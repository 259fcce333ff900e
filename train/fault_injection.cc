#include "train/fault_injection.h"

#include <signal.h>

#include <cstdlib>
#include <map>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status.h"

namespace clipscale {

absl::StatusOr<std::optional<FaultPlan>> ParseFaultPlan(const std::string& value) {
  if (value.empty()) return std::nullopt;
  const std::vector<std::string> parts = absl::StrSplit(value, ':');
  static const std::map<std::string, FaultPlan::Action> kActions = {
      {"abort", FaultPlan::Action::kAbort},     {"kill", FaultPlan::Action::kKill},
      {"sigterm", FaultPlan::Action::kSigterm}, {"sigusr1", FaultPlan::Action::kSigusr1},
      {"sigint", FaultPlan::Action::kSigint}};
  FaultPlan plan;
  const bool ok = (parts.size() == 2 || (parts.size() == 3 && kActions.count(parts[2]))) &&
                  absl::SimpleAtoi(parts[0], &plan.rank) && plan.rank >= 0 &&
                  absl::SimpleAtoi(parts[1], &plan.step) && plan.step >= 0;
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFaultAtStepVariable, "='", value,
                     "': expected RANK:STEP or RANK:STEP:ACTION, ACTION one of abort, kill, "
                     "sigterm, sigusr1, sigint"));
  }
  if (parts.size() == 3) plan.action = kActions.at(parts[2]);
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
  switch (fault->action) {
    case FaultPlan::Action::kError:
      return absl::AbortedError(message);
    case FaultPlan::Action::kAbort:
      FatalError(__FILE__, __LINE__, message);
    case FaultPlan::Action::kKill:
      ::raise(SIGKILL);
      break;
    case FaultPlan::Action::kSigterm:
      ::raise(SIGTERM);
      break;
    case FaultPlan::Action::kSigusr1:
      ::raise(SIGUSR1);
      break;
    case FaultPlan::Action::kSigint:
      ::raise(SIGINT);
      break;
  }
  return absl::OkStatus();
}

int CheckpointPauseMs() {
  const char* value = std::getenv(kCheckpointPauseVariable);
  int ms = 0;
  return value && absl::SimpleAtoi(value, &ms) && ms > 0 ? ms : 0;
}

}  // namespace clipscale
