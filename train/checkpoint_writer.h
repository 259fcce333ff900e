// Writes checkpoints on a background thread while training goes on: the
// training loop copies the state into the writer's snapshot (the only part
// that blocks it), and the thread writes and commits it. At most one save is
// in flight; the next one waits for it.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "train/checkpoint.h"

namespace clipscale {

struct CheckpointWriterOptions {
  std::string root;        // <output>/checkpoints
  int64_t keep = 3;        // see PruneCheckpoints
  int64_t keep_every = 0;
  int pause_ms = 0;        // CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS: sleep after each file
};

class CheckpointWriter {
 public:
  explicit CheckpointWriter(CheckpointWriterOptions options);
  ~CheckpointWriter();  // finishes a save in flight

  // Blocks until no save is in flight; returns the seconds it waited.
  double Wait();
  // The snapshot to fill for the next save; only between Wait() and Start().
  CheckpointSnapshot* snapshot() { return &snapshot_; }
  // Writes snapshot(): on the thread (async), or before returning.
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

  const CheckpointWriterOptions options_;
  CheckpointSnapshot snapshot_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false, stop_ = false;
  std::optional<Outcome> outcome_;
  std::thread thread_;
};

}  // namespace clipscale
