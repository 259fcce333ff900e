// Writes checkpoints on a background thread while training goes on: the
// training loop copies the state into the writer's snapshot (the only part
// that blocks it), and the thread writes and commits it. At most one save is
// in flight; the next one waits for it.
//
// A save is two-phase. Rank 0 Prepare()s the step's temporary folder, every
// rank writes its part into it (WriteRankPart), and the commit lists them all:
//   without a coordinator, rank 0 gathered the parts' entries (AddParts) and
//     its thread commits after writing model, optimizer and state;
//   under `clipscale launch` (options.job supervised), every rank votes with its
//     part and rank 0's thread votes with its files and waits: the coordinator
//     commits when every vote is in, so a rank that dies mid-save leaves
//     `latest` where it was.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "core/checkpoint_dir.h"
#include "train/checkpoint.h"
#include "train/job_control.h"

namespace clipscale {

struct CheckpointWriterOptions {
  std::string root;        // <output>/checkpoints
  int64_t keep = 3;        // see PruneCheckpoints
  int64_t keep_every = 0;
  int pause_ms = 0;        // CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS: sleep after each file
  JobControl* job = nullptr;  // supervised: the coordinator commits
};

class CheckpointWriter {
 public:
  explicit CheckpointWriter(CheckpointWriterOptions options);
  ~CheckpointWriter();  // finishes a save in flight

  // Blocks until no save is in flight; returns the seconds it waited.
  double Wait();
  // Creates the temporary folder of `step` (after Wait()).
  absl::Status Prepare(int64_t step);
  // Files the ranks wrote into it, for the manifest (rank 0's own part included).
  void AddParts(std::vector<ManifestEntry> parts) { parts_ = std::move(parts); }
  // Drops a prepared save (a rank could not write its part).
  void Abandon();
  // The snapshot to fill for the next save; only between Wait() and Start().
  CheckpointSnapshot* snapshot() { return &snapshot_; }
  // Writes snapshot() and commits: on the thread (async), or before returning.
  void Start(bool async);

  // The outcome of a save that finished since the last call: the committed
  // folder, or why it failed (nothing committed; `latest` unchanged).
  struct Outcome {
    int64_t step = 0;
    absl::StatusOr<std::string> dir;
    double seconds = 0;  // writing time
  };
  std::optional<Outcome> TakeOutcome();

 private:
  void Loop();
  void Write();
  absl::StatusOr<std::string> WriteAndCommit();

  const CheckpointWriterOptions options_;
  CheckpointSnapshot snapshot_;
  std::optional<CheckpointDirWriter> dir_;
  std::vector<ManifestEntry> parts_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false, stop_ = false;
  std::optional<Outcome> outcome_;
  std::thread thread_;
};

}  // namespace clipscale
