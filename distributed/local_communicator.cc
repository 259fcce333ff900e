#include "distributed/local_communicator.h"

#include "core/status.h"

namespace clipscale {
namespace {

class DoneWork : public CommWork {
 public:
  void Wait() override {}
};

void CheckGatherable(const torch::Tensor& input, const char* op) {
  CS_CHECK_MSG(input.defined() && input.dim() >= 1, op, " needs a tensor with a dim 0");
}

}  // namespace

torch::Tensor LocalCommunicator::AllGather(const torch::Tensor& input) {
  CheckGatherable(input, "AllGather");
  return input.clone();
}

torch::Tensor LocalCommunicator::ReduceScatter(const torch::Tensor& input) {
  CheckGatherable(input, "ReduceScatter");
  return input.clone();
}

void LocalCommunicator::AllReduce(torch::Tensor& tensor, ReduceOp op) {
  CS_CHECK_MSG(tensor.defined(), "AllReduce of an undefined tensor");
}

std::unique_ptr<CommWork> LocalCommunicator::AllReduceAsync(torch::Tensor& tensor, ReduceOp op) {
  AllReduce(tensor, op);
  return std::make_unique<DoneWork>();
}

void LocalCommunicator::Broadcast(torch::Tensor& tensor, int root) {
  CS_CHECK_MSG(root == 0, "Broadcast root ", root, " but the local backend has one rank");
}

}  // namespace clipscale
