// Collectives over MPI on contiguous CPU tensors of float32, float64 or int64.
// MPI errors abort with the rank and the call (the communicator is set to
// MPI_ERRORS_RETURN so that the error reaches us).
#pragma once

#include <mpi.h>

#include "distributed/communicator.h"

namespace clipscale {

class MpiCommunicator : public Communicator {
 public:
  // Collective over `parent`, which is duplicated. MPI must be active
  // (MpiRuntime) and must outlive this object.
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string backend() const override { return "mpi"; }

  torch::Tensor AllGather(const torch::Tensor& input) override;
  torch::Tensor ReduceScatter(const torch::Tensor& input) override;
  void AllReduce(torch::Tensor& tensor, ReduceOp op) override;
  // MPI_Iallreduce; the tensor must not be touched until Wait() returns.
  // Destroying the work waits for it.
  std::unique_ptr<CommWork> AllReduceAsync(torch::Tensor& tensor, ReduceOp op) override;
  void Broadcast(torch::Tensor& tensor, int root) override;
  void Barrier() override;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
};

}  // namespace clipscale
