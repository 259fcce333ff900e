// Chooses and builds the Communicator once, at startup. The only place that
// knows which backends this build has.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "distributed/communicator.h"

namespace clipscale {

struct CommunicatorOptions {
  // "auto": "local" for one rank; otherwise "nccl" when this build has NCCL
  // and CUDA is available, else "mpi". "mpi" and "nccl" need an active
  // MpiRuntime (they find their peers through MPI_COMM_WORLD).
  std::string backend = "auto";
  // A NCCL collective unfinished after this long ends the job (see
  // nccl_communicator.h); ignored by the other backends.
  double nccl_timeout_s = 600;

  CommunicatorOptions& set_backend(std::string value) {
    backend = std::move(value);
    return *this;
  }
  CommunicatorOptions& set_nccl_timeout_s(double value) {
    nccl_timeout_s = value;
    return *this;
  }
  template <class V>
  void Visit(V& v) {
    v("backend", backend);
    v("nccl_timeout_s", nccl_timeout_s);
  }
};

// InvalidArgument for an unknown backend or a non-positive timeout;
// Unimplemented for "nccl" in a build without NCCL; FailedPrecondition when the
// backend cannot work here (no MPI for "mpi"/"nccl", no CUDA device for "nccl",
// or a launcher that started several ranks while MPI is not initialized).
absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(
    const CommunicatorOptions& options);

// The backends compiled into this build, e.g. {"local", "mpi", "nccl"}.
std::vector<std::string> CompiledBackends();

}  // namespace clipscale
