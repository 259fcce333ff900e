// Collectives over NCCL on CUDA tensors. Compiled only when NCCL is found;
// callers reach it through CreateCommunicator(backend "nccl" or "auto").
#pragma once

#include <memory>

#include "distributed/communicator.h"

namespace clipscale {

// Builds a communicator over MPI_COMM_WORLD's ranks (MPI must be active):
// rank 0's ncclUniqueId is broadcast over MPI, and each rank uses CUDA device
// local_rank % device_count, which becomes the current device.
//
// Collectives run on the communicator's own stream, ordered after the work
// already queued on the caller's current stream (a CUDA event), and the
// current stream waits for them before anything queued later; the host never
// blocks except in Barrier(). CommWork::Wait() is likewise a stream wait.
// Tensors: contiguous, on this rank's device; float32/16, bfloat16, float64,
// int32, int64.
//
// A watchdog thread polls ncclCommGetAsyncError and each collective's
// completion; a collective unfinished `timeout_s` after the host issued it
// (time spent queued behind earlier kernels counts), or an asynchronous
// NCCL error, aborts the NCCL communicator and exits the process non-zero
// with a message naming the rank and the collective.
std::unique_ptr<Communicator> CreateNcclCommunicator(double timeout_s);

}  // namespace clipscale
