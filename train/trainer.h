// The training loop, data-parallel over the ranks of the job (one rank without
// a launcher): init → data/model/optimizer → loop {this rank's share of the
// global batch → tiled loss over all ranks → bucketed gradient all-reduce →
// step → schedule → maybe eval} → final eval and weights. Rank 0 alone writes
// the output folder and logs.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
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
};

absl::StatusOr<TrainResult> Train(const TrainConfig& config);

}  // namespace clipscale
