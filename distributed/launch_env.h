// Which rank this process is, read from the variables a launcher exports
// before MPI is initialized (to pick a GPU, or to decide whether MPI is needed).
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace clipscale {

using EnvMap = std::map<std::string, std::string>;

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  // Ranks on this node, where the launcher says (OMPI_COMM_WORLD_LOCAL_SIZE,
  // MPI_LOCALNRANKS, SLURM_NTASKS_PER_NODE, LOCAL_WORLD_SIZE); else 1.
  int local_size = 1;
  // "openmpi", "pmi", "slurm", "torchrun", or "none" (a plain single process).
  std::string launcher = "none";
};

// Reads rank, world size and local rank from the first launcher whose variables
// are present, in this order: Open MPI (OMPI_COMM_WORLD_*), PMI (PMI_RANK /
// PMI_SIZE, local rank from MPI_LOCALRANKID or SLURM_LOCALID), Slurm (SLURM_PROCID / SLURM_NTASKS
// / SLURM_LOCALID, in a task srun started: SLURM_STEP_ID is set; a batch script is
// no rank), torchrun (RANK / WORLD_SIZE / LOCAL_RANK). The MPI launchers
// come first because mpirun inside a Slurm allocation inherits the allocation's
// SLURM_* variables, which then describe the batch step rather than this rank.
// A missing local rank defaults to 0 when world_size is 1 and is an error otherwise.
// Returns InvalidArgument, naming the variable, for non-integers, a rank set
// without its size, or values out of range.
absl::StatusOr<LaunchEnv> ParseLaunchEnv(const EnvMap& env);

// The one rule for which CUDA device a rank uses, for the trainer and the NCCL
// communicator alike: local_rank % visible devices. With one device per task
// (srun --gpus-per-task=1: CUDA_VISIBLE_DEVICES names one) that is device 0;
// with every GPU of the node visible (mpirun, or --gres=gpu:8 and 8 tasks), the
// local rank's own. InvalidArgument when no device is visible.
absl::StatusOr<int> DeviceForLocalRank(int local_rank, int visible_devices);

// A copy of this process's environment.
EnvMap ProcessEnvironment();

}  // namespace clipscale
