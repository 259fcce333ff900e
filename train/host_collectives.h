// Collectives on small host tensors (flags, counts, hashes) through the
// backend's device: NCCL takes only CUDA tensors, MPI only CPU ones.
#pragma once

#include <torch/types.h>

#include "distributed/communicator.h"

namespace clipscale {

// `device`: where the job's tensors live (the model's device).
inline void HostAllReduce(torch::Tensor& host, ReduceOp op, Communicator& comm,
                          const torch::Device& device) {
  if (device.is_cpu()) {
    comm.AllReduce(host, op);
    return;
  }
  torch::Tensor on_device = host.to(device);
  comm.AllReduce(on_device, op);
  host = on_device.to(torch::kCPU);
}

inline torch::Tensor HostAllGather(const torch::Tensor& host, Communicator& comm,
                                   const torch::Device& device) {
  return comm.AllGather(host.to(device)).to(torch::kCPU);
}

}  // namespace clipscale
