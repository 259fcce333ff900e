// The supervisor of `clipscale launch`: starts the worker job (mpirun, or srun
// inside a Slurm allocation, in a session of its own), watches it through the coordinator, tears the whole
// session down when a rank dies or the job hangs, and starts it again from
// the last committed checkpoint, with backoff, up to max_restarts times. A
// slot that keeps failing is left out and the job continues on the largest
// world size that divides the global batch (gradient caching keeps the
// per-pass memory, the loader the global batches). In the end it exits 0, or
// non-zero with a summary of every failure.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "launcher/coordinator/coordinator.h"

namespace clipscale {

// Where an attempt starts: the checkpoint `--resume latest` will pick.
struct ResumePoint {
  int64_t step = 0;  // 0: fresh
  std::optional<uint64_t> index_hash;
  std::string dir;
};

struct SupervisorOptions {
  std::string binary;                   // the clipscale executable the workers run
  std::vector<std::string> train_args;  // `clipscale train` arguments, without --resume
  std::string first_resume;             // the user's --resume, for the first attempt
  int np = 1;
  // "mpirun", or "srun": the ranks are a job step of the Slurm allocation this
  // launch runs in (srun --mpi=pmix; a failed step is started again inside it).
  std::string launcher = "mpirun";
  std::string hostfile;                 // mpirun; "": every rank on this machine
  // srun: the allocation's nodes and their task counts (where slots are left out).
  std::vector<std::pair<std::string, int>> slurm_nodes;
  std::vector<std::string> launcher_args;  // passed to mpirun/srun before the program
  int64_t max_restarts = 3;
  double backoff_s = 5, backoff_max_s = 60;
  int64_t exclude_after = 2;
  int64_t global_batch = 0;
  int64_t micro_batch = 0;              // the recipe's (0: none)
  std::string status_path;              // <output>/launch/status.json, rewritten every second
  // The newest checkpoint that `--resume latest` would take (nullopt: none).
  std::function<absl::StatusOr<std::optional<ResumePoint>>(const std::string& resume)> resolve;
  std::vector<std::string> forward_env;  // names of variables the ranks get too (mpirun -x)
  std::string job_id;                    // names the srun step: clipscale-<job id>
};

// Runs the job to the end; returns the launch's exit code (0, 1, or 75/130
// when the launch itself was asked to stop and the job saved).
int Supervise(const SupervisorOptions& options, Coordinator& coordinator);

// The world size after some slots are left out: the largest W <= slots that
// divides the global batch (0 when none does).
int ShrunkWorldSize(int slots, int64_t global_batch);

}  // namespace clipscale
