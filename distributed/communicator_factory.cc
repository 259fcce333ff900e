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

// Guards against N copies of a single-rank job that each think they are alone.
absl::Status CheckLaunchedAlone() {
  ASSIGN_OR_RETURN(LaunchEnv env, ParseLaunchEnv(ProcessEnvironment()));
  if (env.world_size > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("the ", env.launcher, " launcher started ", env.world_size,
                     " ranks but MPI is not initialized; main must create a MpiRuntime"));
  }
  return absl::OkStatus();
}

// A launcher that promised W ranks while MPI found fewer (torchrun's
// RANK/WORLD_SIZE do not bootstrap MPI: each process becomes a singleton)
// would train W copies apart.
absl::Status CheckMpiSeesTheLaunch() {
  ASSIGN_OR_RETURN(LaunchEnv env, ParseLaunchEnv(ProcessEnvironment()));
  if (env.world_size != WorldSize()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", env.launcher, " launcher started ", env.world_size, " ranks but MPI sees ",
        WorldSize(), "; start the job with mpirun or srun (torchrun cannot bootstrap MPI)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveAuto() {
  if (!MpiRuntime::Active()) {
    RETURN_IF_ERROR(CheckLaunchedAlone());
    return std::string("local");
  }
  if (WorldSize() == 1) return std::string("local");
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
  if (MpiRuntime::Active()) RETURN_IF_ERROR(CheckMpiSeesTheLaunch());
  std::string backend = options.backend;
  if (backend == "auto") {
    ASSIGN_OR_RETURN(backend, ResolveAuto());
  }
  if (backend == "local") {
    if (!MpiRuntime::Active()) RETURN_IF_ERROR(CheckLaunchedAlone());
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
