#include "distributed/communicator_factory.h"

#include <mpi.h>
#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "distributed/launch_env.h"
#include "distributed/local_communicator.h"
#include "distributed/mpi_communicator.h"
#include "distributed/mpi_runtime.h"
#if CLIPSCALE_WITH_NCCL
#include "distributed/nccl_communicator.h"
#endif

namespace clipscale {
namespace {

#if CLIPSCALE_WITH_NCCL
constexpr bool kHaveNccl = true;
#else
constexpr bool kHaveNccl = false;
#endif

int WorldSize() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// Guards against N copies of a job that each think they are alone: the ranks
// the launcher promised must be the ranks MPI found (1 without MPI). torchrun's
// RANK/WORLD_SIZE, for one, do not bootstrap MPI: each process is a singleton.
absl::Status CheckLaunchMatchesMpi() {
  ASSIGN_OR_RETURN(LaunchEnv env, ParseLaunchEnv(ProcessEnvironment()));
  const bool mpi = MpiRuntime::Active();
  const int mpi_size = mpi ? WorldSize() : 1;
  if (env.world_size == mpi_size) return absl::OkStatus();
  const std::string started =
      absl::StrCat("the ", env.launcher, " launcher started ", env.world_size, " ranks but ");
  if (!mpi) {
    return absl::FailedPreconditionError(
        absl::StrCat(started, "MPI is not initialized; main must create a MpiRuntime"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat(started, "MPI sees ", mpi_size,
                   "; start the job with mpirun or srun (torchrun cannot bootstrap MPI)"));
}

std::string ResolveAuto() {
  if (!MpiRuntime::Active() || WorldSize() == 1) return std::string("local");
  return std::string(kHaveNccl && torch::cuda::is_available() ? "nccl" : "mpi");
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateNccl(const CommunicatorOptions& options) {
#if CLIPSCALE_WITH_NCCL
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError("backend nccl: no CUDA device is available");
  }
  return CreateNcclCommunicator(options.nccl_timeout_s);
#else
  return absl::UnimplementedError("backend nccl: this build has no NCCL");
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(
    const CommunicatorOptions& options) {
  if (!(options.nccl_timeout_s > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl_timeout_s must be positive, got ", options.nccl_timeout_s));
  }
  std::string backend = options.backend;
  // Without MPI, "mpi" and "nccl" fail below with their own reason.
  if (MpiRuntime::Active() || backend == "auto" || backend == "local") {
    RETURN_IF_ERROR(CheckLaunchMatchesMpi());
  }
  if (backend == "auto") backend = ResolveAuto();
  if (backend == "local") {
    if (MpiRuntime::Active() && WorldSize() > 1) {
      return absl::FailedPreconditionError(absl::StrCat("backend local in a job of ", WorldSize(),
                                                        " MPI ranks would train them apart"));
    }
    return std::unique_ptr<Communicator>(std::make_unique<LocalCommunicator>());
  }
  if (backend != "mpi" && backend != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown communicator backend '", backend, "' (auto, local, mpi, nccl)"));
  }
  if (!MpiRuntime::Active()) {
    return absl::FailedPreconditionError(
        absl::StrCat("backend ", backend, " needs MPI; main must create a MpiRuntime first"));
  }
  if (backend == "mpi") return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>());
  return CreateNccl(options);
}

std::vector<std::string> CompiledBackends() {
  std::vector<std::string> backends = {"local", "mpi"};
  if (kHaveNccl) backends.push_back("nccl");
  return backends;
}

}  // namespace clipscale
