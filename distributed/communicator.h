// Collective communication behind one interface: MPI on CPU tensors, NCCL on
// CUDA tensors, and a single-rank local backend; chosen once by
// CreateCommunicator. Nothing outside distributed/ calls MPI or NCCL.
#pragma once

#include <memory>
#include <string>

#include <torch/types.h>

#include "absl/status/statusor.h"

namespace clipscale {

enum class ReduceOp { kSum, kMax };

// An operation in flight; Wait() blocks until its result may be read.
class CommWork {
 public:
  virtual ~CommWork() = default;
  virtual void Wait() = 0;
  // Lets the library advance the operation without blocking; true once it is
  // done. Open MPI moves a nonblocking collective's data only inside MPI calls,
  // so a caller that wants it to overlap with computation calls this now and
  // then (NCCL runs on its own stream: nothing to do).
  virtual bool Progress() { return false; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;
  virtual std::string backend() const = 0;  // "local", "mpi", "nccl"

  // Concatenates every rank's `input` along dim 0, in rank order. All ranks pass
  // the same shape. Contiguous tensors on the backend's device.
  virtual torch::Tensor AllGather(const torch::Tensor& input) = 0;
  // Sums `input` over ranks and returns this rank's block of dim 0
  // (input.size(0) must be divisible by size()).
  virtual torch::Tensor ReduceScatter(const torch::Tensor& input) = 0;
  // In place.
  virtual void AllReduce(torch::Tensor& tensor, ReduceOp op) = 0;
  virtual std::unique_ptr<CommWork> AllReduceAsync(torch::Tensor& tensor, ReduceOp op) = 0;
  virtual void Broadcast(torch::Tensor& tensor, int root) = 0;
  virtual void Barrier() = 0;
};

}  // namespace clipscale
