// Fault injection, for the tests of what failing ranks do to a job. Test-only:
// nothing in a real run sets these variables.
//
// CLIPSCALE_FAULT_FAIL_AT_STEP=FAULT[;FAULT...] with FAULT =
//   RANK:STEP[:ACTION][:phase=PHASE][:attempt=N|*][:seconds=S]
// makes rank RANK misbehave as it reaches PHASE (default `data`, the start of
// the step) of global step STEP (0-based; `A-B` is every step from A to B)
// while the other ranks go on into that step's collectives. ACTION:
//   error     the error path: the step returns a Status, the rank reports it
//             and main ends the job with MPI_Abort (the default);
//   abort     the crash path: a failed CHECK aborts the process;
//   throw     a C++ exception nobody catches (the process ends as on abort);
//   exit      the process exits with status 1 at once, as a crashing library would;
//   kill      the rank sends itself SIGKILL (as `kill -9` would);
//   stop      the rank sends itself SIGSTOP (frozen: no progress, no heartbeat);
//   hang      the training thread sleeps for ever (heartbeats go on);
//   slow      the training thread sleeps S seconds (default 5), then goes on;
//   nan       this rank's batch turns into NaNs: the loss and every gradient
//             are non-finite on all ranks (the step is skipped, see
//             TrainConfig::max_skipped_steps);
//   sigterm, sigusr1, sigint
//             the rank sends itself that signal (as Slurm or a user would),
//             and the step goes on.
// `attempt` is the supervisor's attempt number (CLIPSCALE_ATTEMPT, 0 for the
// first run and for runs without `clipscale launch`): by default a fault fires
// in attempt 0 only, so the restarted job runs clean; `*` fires in every attempt.
// Unset or empty, nothing happens. A malformed value is an error at step 0 on
// every rank, so a typo cannot quietly disable a test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "train/job_control.h"

namespace clipscale {

inline constexpr char kFaultAtStepVariable[] = "CLIPSCALE_FAULT_FAIL_AT_STEP";
// Set by `clipscale launch` for every attempt of the worker job: 0, 1, ...
inline constexpr char kAttemptVariable[] = "CLIPSCALE_ATTEMPT";

// CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS=N: the checkpoint writer sleeps N ms
// after each file, so that a test can kill a rank while a save is half written.
inline constexpr char kCheckpointPauseVariable[] = "CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS";
int CheckpointPauseMs();

struct FaultPlan {
  enum class Action {
    kError, kAbort, kThrow, kExit, kKill, kStop, kHang, kSlow, kNan, kSigterm, kSigusr1, kSigint
  };
  int rank = 0;
  int64_t first_step = 0, last_step = 0;  // inclusive
  Action action = Action::kError;
  Phase phase = Phase::kData;
  int attempt = 0;  // -1: every attempt
  double seconds = 5;  // kSlow
};

// Parses the variable's value; empty for an empty value.
absl::StatusOr<std::vector<FaultPlan>> ParseFaultPlans(const std::string& value);

// Called by the training loop at every phase of every step. Returns the
// injected error (or aborts, exits, signals, sleeps) when the environment asks
// for a fault at this rank, step, phase and attempt; OK otherwise. A `nan`
// fault sets *nan (when given) instead. Reads the environment once.
absl::Status InjectedFault(int rank, int64_t step, Phase phase = Phase::kData,
                           bool* nan = nullptr);

}  // namespace clipscale
