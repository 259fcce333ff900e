// Preemption: SIGTERM and SIGUSR1 (what Slurm sends before it ends or requeues
// a job) and SIGINT only set a flag; the training loop looks at it at step
// boundaries, where all ranks agree, save and exit. Later signals of the same
// kind while that save runs change nothing.
#pragma once

namespace clipscale {

// Exit codes of `clipscale train` that the supervisor and job scripts act on.
inline constexpr int kExitRequeue = 75;       // saved on SIGTERM/SIGUSR1: run me again with --resume
inline constexpr int kExitInterrupted = 130;  // saved on SIGINT (128 + 2): do not requeue

enum class StopRequest { kNone = 0, kInterrupt = 1, kRequeue = 2 };  // larger wins

// Installs the handlers for the object's lifetime (restoring the previous ones after).
class StopSignalScope {
 public:
  StopSignalScope();
  ~StopSignalScope();
  StopSignalScope(const StopSignalScope&) = delete;
  StopSignalScope& operator=(const StopSignalScope&) = delete;
};

// What this process was asked since the handlers were installed.
StopRequest PendingStopRequest();

}  // namespace clipscale
