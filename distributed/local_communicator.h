// The single-process backend: rank 0 of 1, on any device. Collectives are
// identities; AllGather and ReduceScatter return copies, as a real backend's
// fresh outputs would be, so callers may write to them.
#pragma once

#include "distributed/communicator.h"

namespace clipscale {

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  std::string backend() const override { return "local"; }

  torch::Tensor AllGather(const torch::Tensor& input) override;
  torch::Tensor ReduceScatter(const torch::Tensor& input) override;
  void AllReduce(torch::Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<CommWork> AllReduceAsync(torch::Tensor& tensor, ReduceOp op) override;
  void Broadcast(torch::Tensor& tensor, int root) override;
  void Barrier() override {}
};

}  // namespace clipscale
