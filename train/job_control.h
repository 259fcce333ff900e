// What the training loop tells whoever supervises the job, and asks it. Under
// `clipscale launch` a coordinator (launcher/coordinator/, over gRPC) is on the
// other side: it checks that all ranks run the same build, recipe and data,
// watches their heartbeats for dead and hung ranks, and commits checkpoints
// once every rank has voted for its part. Without it (plain mpirun, one
// process) the trainer gets NoJobControl and behaves as it always did.
//
// Why an interface here and the gRPC client in launcher/: train/ must not
// know about processes, sockets or gRPC (the layout's arrows point down, and
// every TU of train/ pays for what it includes), while the launcher owns the
// job and its coordinator anyway; it hands the trainer a client. The
// coordinator's .proto lives with the service for the same reason. LibTorch
// and gRPC stay apart: this header needs neither.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/checkpoint_dir.h"

namespace clipscale {

// Where in a step a rank is; heartbeats carry it, and a hang is reported by it.
enum class Phase : int {
  kStartup = 0,
  kData = 1,
  kForward = 2,
  kLoss = 3,
  kBackward = 4,
  kAllReduce = 5,
  kOptimizer = 6,
  kEval = 7,
  kSave = 8,
  kDone = 9,
};
inline constexpr int kNumPhases = 10;
inline constexpr const char* kPhaseNames[kNumPhases] = {
    "startup", "data", "forward", "loss", "backward", "all-reduce", "optimizer", "eval", "save",
    "done"};
inline const char* PhaseName(Phase phase) {
  const int i = static_cast<int>(phase);
  return i >= 0 && i < kNumPhases ? kPhaseNames[i] : "unknown";
}
// The phase of a name (as above); false for anything else.
inline bool ParsePhase(const std::string& name, Phase* phase) {
  for (int i = 0; i < kNumPhases; ++i) {
    if (name == kPhaseNames[i]) {
      *phase = static_cast<Phase>(i);
      return true;
    }
  }
  return false;
}

// What a rank says when it joins the job.
struct WorkerInfo {
  int rank = 0;
  int world_size = 1;
  std::string host;
  int64_t pid = 0;
  std::string build;         // version and build stamp: all ranks must agree
  uint64_t config_hash = 0;  // of the effective recipe
  uint64_t index_hash = 0;   // of the training split's index
  int64_t resume_step = 0;   // the checkpoint this rank starts from (0: fresh)
  int64_t global_batch = 0;
};

// What the coordinator hands every rank: the data and the starting point the
// whole job agreed on. A rank whose own values differ must not take a step.
struct JobPlan {
  uint64_t index_hash = 0;
  int64_t resume_step = 0;
};

class JobControl {
 public:
  virtual ~JobControl() = default;

  // True when a coordinator supervises the job: it commits checkpoints.
  virtual bool supervised() const { return false; }

  // Joins the job; returns after every rank joined (or fails with why the
  // coordinator refused this rank).
  virtual absl::StatusOr<JobPlan> Register(const WorkerInfo& info) {
    return JobPlan{info.index_hash, info.resume_step};
  }

  // Cheap and thread-safe: the rank is now at `phase` of `step` (0-based
  // steps; after the last one, the step count). Heartbeats carry the latest.
  virtual void Progress(int64_t step, Phase phase) {}
  // Seconds the last step took, for the hang bound (k x median step time).
  virtual void StepTime(double seconds) {}
  // Bad samples so far on this rank, by shard.
  virtual void BadData(const std::map<std::string, int64_t>& by_shard) {}
  // An optimizer step skipped for a non-finite loss or gradient.
  virtual void SkippedStep(int64_t step) {}

  // Two-phase checkpoint commit: this rank wrote (and fsynced) `files` into the
  // temporary folder of the checkpoint of `step` (or failed: `error`). With
  // `wait`, returns once the coordinator decided: the committed folder, or why
  // the save was dropped. Without, returns once the vote is recorded ("").
  virtual absl::StatusOr<std::string> Vote(int64_t step, const std::vector<ManifestEntry>& files,
                                           const std::string& error, bool wait) {
    return absl::FailedPreconditionError("no coordinator to vote with");
  }

  // The reason this rank is about to fail, for the job's failure summary.
  virtual void Failed(const std::string& cause) {}
};

// No coordinator: every call does nothing (or echoes the rank's own values).
class NoJobControl final : public JobControl {};

}  // namespace clipscale
