// Fault injection, for the tests of what one failing rank does to a job.
//
// CLIPSCALE_FAULT_FAIL_AT_STEP=RANK:STEP makes rank RANK fail as it reaches
// global step STEP (0-based) while the other ranks go on into that step's
// collectives:
//   RANK:STEP        the error path: the step returns a Status, the rank
//                    reports it and main ends the job with MPI_Abort;
//   RANK:STEP:abort  the crash path: a failed CHECK aborts the process and
//                    the launcher ends the other ranks;
//   RANK:STEP:kill   the rank sends itself SIGKILL (as `kill -9` would);
//   RANK:STEP:sigterm, :sigusr1, :sigint
//                    the rank sends itself that signal as the step starts (as
//                    Slurm or a user would), and the step goes on.
// Unset or empty, nothing happens. A malformed value is an error at step 0 on
// every rank, so a typo cannot quietly disable a test.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipscale {

inline constexpr char kFaultAtStepVariable[] = "CLIPSCALE_FAULT_FAIL_AT_STEP";

// CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS=N: the checkpoint writer sleeps N ms
// after each file, so that a test can kill a rank while a save is half written.
inline constexpr char kCheckpointPauseVariable[] = "CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS";
int CheckpointPauseMs();

struct FaultPlan {
  enum class Action { kError, kAbort, kKill, kSigterm, kSigusr1, kSigint };
  int rank = 0;
  int64_t step = 0;
  Action action = Action::kError;
};

// Parses "RANK:STEP" or "RANK:STEP:ACTION"; nullopt for an empty value.
absl::StatusOr<std::optional<FaultPlan>> ParseFaultPlan(const std::string& value);

// Called by the training loop at the start of every step. Returns the
// injected error (or aborts, or signals) when the environment asks for a fault
// at this rank and step; OK otherwise. Reads the environment once.
absl::Status InjectedFault(int rank, int64_t step);

}  // namespace clipscale
