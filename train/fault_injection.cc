#include "train/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "core/status.h"

namespace clipscale {
namespace {

using Action = FaultPlan::Action;

const std::map<std::string, Action>& Actions() {
  static const auto* actions = new std::map<std::string, Action>{
      {"error", Action::kError},     {"abort", Action::kAbort},     {"throw", Action::kThrow},
      {"exit", Action::kExit},       {"kill", Action::kKill},       {"stop", Action::kStop},
      {"hang", Action::kHang},       {"slow", Action::kSlow},       {"nan", Action::kNan},
      {"sigterm", Action::kSigterm}, {"sigusr1", Action::kSigusr1}, {"sigint", Action::kSigint}};
  return *actions;
}

bool ParseSteps(const std::string& text, FaultPlan* plan) {
  const std::vector<std::string> range = absl::StrSplit(text, '-');
  if (range.size() > 2 || !absl::SimpleAtoi(range[0], &plan->first_step) ||
      plan->first_step < 0) {
    return false;
  }
  plan->last_step = plan->first_step;
  return range.size() == 1 ||
         (absl::SimpleAtoi(range[1], &plan->last_step) && plan->last_step >= plan->first_step);
}

bool ParseOption(const std::string& option, FaultPlan* plan) {
  const std::vector<std::string> kv = absl::StrSplit(option, absl::MaxSplits('=', 1));
  if (kv.size() != 2) return false;
  if (kv[0] == "phase") return ParsePhase(kv[1], &plan->phase);
  if (kv[0] == "attempt") {
    if (kv[1] == "*") {
      plan->attempt = -1;
      return true;
    }
    return absl::SimpleAtoi(kv[1], &plan->attempt) && plan->attempt >= 0;
  }
  if (kv[0] == "seconds") return absl::SimpleAtod(kv[1], &plan->seconds) && plan->seconds >= 0;
  return false;
}

absl::StatusOr<FaultPlan> ParseOne(const std::string& text) {
  const std::vector<std::string> parts = absl::StrSplit(text, ':');
  FaultPlan plan;
  bool ok = parts.size() >= 2 && absl::SimpleAtoi(parts[0], &plan.rank) && plan.rank >= 0 &&
            ParseSteps(parts[1], &plan);
  size_t next = 2;
  if (ok && parts.size() > 2 && parts[2].find('=') == std::string::npos) {
    auto action = Actions().find(parts[2]);
    ok = action != Actions().end();
    if (ok) plan.action = action->second;
    next = 3;
  }
  for (size_t i = next; ok && i < parts.size(); ++i) ok = ParseOption(parts[i], &plan);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFaultAtStepVariable, "='", text,
        "': expected RANK:STEP[:ACTION][:phase=P][:attempt=N|*][:seconds=S] (STEP: N or A-B; "
        "ACTION: error, abort, throw, exit, kill, stop, hang, slow, nan, sigterm, sigusr1, "
        "sigint; P: data, forward, loss, backward, all-reduce, optimizer, eval, save)"));
  }
  return plan;
}

int Attempt() {
  const char* value = std::getenv(kAttemptVariable);
  int attempt = 0;
  return value && absl::SimpleAtoi(value, &attempt) ? attempt : 0;
}

void Fire(const FaultPlan& fault, const std::string& message, bool* nan) {
  std::fprintf(stderr, "clipscale: %s\n", message.c_str());
  std::fflush(stderr);
  switch (fault.action) {
    case Action::kError:
    case Action::kAbort:
      break;  // the caller returns or aborts with the message
    case Action::kThrow:
      throw std::runtime_error(message);
    case Action::kExit:
      std::fflush(stdout);
      std::_Exit(1);
    case Action::kKill:
      ::raise(SIGKILL);
      break;
    case Action::kStop:
      ::raise(SIGSTOP);
      break;
    case Action::kHang:
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    case Action::kSlow:
      std::this_thread::sleep_for(std::chrono::duration<double>(fault.seconds));
      break;
    case Action::kNan:
      if (nan) *nan = true;
      break;
    case Action::kSigterm:
      ::raise(SIGTERM);
      break;
    case Action::kSigusr1:
      ::raise(SIGUSR1);
      break;
    case Action::kSigint:
      ::raise(SIGINT);
      break;
  }
}

}  // namespace

absl::StatusOr<std::vector<FaultPlan>> ParseFaultPlans(const std::string& value) {
  std::vector<FaultPlan> plans;
  for (absl::string_view part : absl::StrSplit(value, ';', absl::SkipWhitespace())) {
    ASSIGN_OR_RETURN(FaultPlan plan, ParseOne(std::string(absl::StripAsciiWhitespace(part))));
    plans.push_back(plan);
  }
  return plans;
}

absl::Status InjectedFault(int rank, int64_t step, Phase phase, bool* nan) {
  static const auto* plans = [] {
    const char* value = std::getenv(kFaultAtStepVariable);
    return new absl::StatusOr<std::vector<FaultPlan>>(ParseFaultPlans(value ? value : ""));
  }();
  static const int attempt = Attempt();
  if (!plans->ok()) return plans->status();
  for (const FaultPlan& fault : **plans) {
    if (fault.rank != rank || step < fault.first_step || step > fault.last_step ||
        fault.phase != phase || (fault.attempt >= 0 && fault.attempt != attempt)) {
      continue;
    }
    const std::string message =
        absl::StrCat("injected fault (", kFaultAtStepVariable, ") at step ", step, " on rank ",
                     rank, phase == Phase::kData ? "" : absl::StrCat(" in ", PhaseName(phase)));
    if (fault.action == Action::kError) return absl::AbortedError(message);
    if (fault.action == Action::kAbort) FatalError(__FILE__, __LINE__, message);
    Fire(fault, message, nan);
  }
  return absl::OkStatus();
}

int CheckpointPauseMs() {
  const char* value = std::getenv(kCheckpointPauseVariable);
  int ms = 0;
  return value && absl::SimpleAtoi(value, &ms) && ms > 0 ? ms : 0;
}

}  // namespace clipscale
