// The training loop, data-parallel over the ranks of the job (one rank without
// a launcher): init → data/model/optimizer → loop {this rank's share of the
// global batch → tiled loss over all ranks → bucketed gradient all-reduce →
// step → schedule → maybe eval → maybe save or stop} → final eval and weights.
// Rank 0 alone writes the output folder, the checkpoints and the logs.
// With `resume`, the run continues from a checkpoint exactly where it was
// saved; SIGTERM/SIGUSR1/SIGINT stop it at the next step boundary after a save.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "train/job_control.h"
#include "train/stop_signal.h"
#include "train/train_config.h"

namespace clipscale {

struct TrainResult {
  int64_t steps = 0;
  double first_loss = 0;  // mean over the first logging window
  double last_loss = 0;   // mean over the last logging window
  double samples_per_second = 0;
  std::map<std::string, double> eval;  // final evaluation (empty without a val split)
  std::map<std::string, double> data;  // bad-data counts over all ranks (data/bad_*, ...)
  double data_wait_fraction = 0;       // share of the step time spent waiting for batches
  std::string weights_path;            // <output>/model.safetensors (OpenCLIP names)
  int rank = 0;                        // this process's rank ...
  int world_size = 1;                  // ... of this many
  std::string backend;                 // the communicator's: local, mpi, nccl
  std::string device;                  // where the model ran, e.g. "cpu"
  int64_t start_step = 0;              // > 0: resumed from a checkpoint of this step
  std::string resumed_from;            // that checkpoint's folder
  // Set when a signal stopped the run at a step boundary (after saving);
  // weights_path and eval are then empty.
  StopRequest stopped = StopRequest::kNone;
  std::string last_checkpoint;         // the newest checkpoint this run committed
  int64_t skipped_steps = 0;           // non-finite loss or gradient: no update (whole run)
};

// `job`: the coordinator's client under `clipscale launch`; nullptr: none.
absl::StatusOr<TrainResult> Train(const TrainConfig& config, JobControl* job = nullptr);

}  // namespace clipscale
