// The one owner of MPI_Init_thread / MPI_Finalize, held by main for the life
// of the program. Keeps <mpi.h> out of its callers.
#pragma once

#include <memory>

#include "absl/status/statusor.h"

namespace clipscale {

class MpiRuntime {
 public:
  // Calls MPI_Init_thread requesting MPI_THREAD_SERIALIZED: one thread at a
  // time calls MPI (the training thread; NCCL's watchdog and the data loader
  // never do). That is all this program needs, and Open MPI's
  // THREAD_MULTIPLE adds locking to every call and is unsupported by some
  // transports. Fails with FailedPrecondition when MPI was already initialized
  // or finalized (it can be initialized once per process) or when the library
  // provides less than SERIALIZED (MPI is then finalized again). Tells
  // SetFatalErrorRank this process's world rank.
  static absl::StatusOr<std::unique_ptr<MpiRuntime>> Init(int* argc, char*** argv);

  // MPI_Finalize. Every communicator must be destroyed before this.
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  // Ends every rank of the job with `code` (MPI_Abort). For a rank that failed
  // while the others may wait in a collective: MPI_Finalize would hang there.
  [[noreturn]] void Abort(int code);

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }

  // True between a successful Init and the runtime's destruction.
  static bool Active();

 private:
  MpiRuntime(int world_rank, int world_size) : world_rank_(world_rank), world_size_(world_size) {}
  int world_rank_;
  int world_size_;
};

}  // namespace clipscale
