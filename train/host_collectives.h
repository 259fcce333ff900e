// Collectives on small host tensors (flags, counts, hashes) through the
// backend's device: NCCL takes only CUDA tensors, MPI only CPU ones.
#pragma once

#include <torch/types.h>

#include <cstring>
#include <string>
#include <vector>

#include "distributed/communicator.h"

namespace clipscale {

namespace host_internal {
// Runs the in-place collective `run` on `host`, through `device` when that is
// not the CPU (copied there and back).
template <class Run>
void InPlaceThrough(torch::Tensor& host, const torch::Device& device, Run run) {
  if (device.is_cpu()) {
    run(host);
    return;
  }
  torch::Tensor on_device = host.to(device);
  run(on_device);
  host = on_device.to(torch::kCPU);
}

// Bytes in int64 words (the MPI backend moves float and int64 only), zero-padded.
inline torch::Tensor PackBytes(const std::string& bytes, int64_t words) {
  torch::Tensor t = torch::zeros({words}, torch::kInt64);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}
inline int64_t WordsFor(int64_t size) { return (size + 7) / 8; }
}  // namespace host_internal

// `device`: where the job's tensors live (the model's device).
inline void HostAllReduce(torch::Tensor& host, ReduceOp op, Communicator& comm,
                          const torch::Device& device) {
  host_internal::InPlaceThrough(host, device, [&](torch::Tensor& t) { comm.AllReduce(t, op); });
}

// Each value's largest and smallest over the ranks, in one all-reduce (MAX of
// v and of ~v; ~ rather than -, which overflows for INT64_MIN). A value is the
// same on every rank when its max equals its min.
struct HostMaxMin {
  std::vector<int64_t> max, min;
  bool same(size_t i) const { return max[i] == min[i]; }
};
inline HostMaxMin HostAllMaxMin(const std::vector<int64_t>& values, Communicator& comm,
                                const torch::Device& device) {
  const auto n = static_cast<int64_t>(values.size());
  torch::Tensor t = torch::empty({2, n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    t[0][i] = values[i];
    t[1][i] = ~values[i];
  }
  HostAllReduce(t, ReduceOp::kMax, comm, device);
  HostMaxMin out;
  for (int64_t i = 0; i < n; ++i) {
    out.max.push_back(t[0][i].item<int64_t>());
    out.min.push_back(~t[1][i].item<int64_t>());
  }
  return out;
}

inline torch::Tensor HostAllGather(const torch::Tensor& host, Communicator& comm,
                                   const torch::Device& device) {
  return comm.AllGather(host.to(device)).to(torch::kCPU);
}

inline void HostBroadcast(torch::Tensor& host, int root, Communicator& comm,
                          const torch::Device& device) {
  host_internal::InPlaceThrough(host, device, [&](torch::Tensor& t) { comm.Broadcast(t, root); });
}

// Root's `bytes` on every rank (a collective; others pass anything).
inline std::string HostBroadcastBytes(const std::string& bytes, int root, Communicator& comm,
                                      const torch::Device& device) {
  torch::Tensor size = torch::full({1}, static_cast<int64_t>(bytes.size()), torch::kInt64);
  HostBroadcast(size, root, comm, device);
  const int64_t n = size.item<int64_t>();
  torch::Tensor data = host_internal::PackBytes(comm.rank() == root ? bytes : std::string(),
                                                std::max<int64_t>(1, host_internal::WordsFor(n)));
  HostBroadcast(data, root, comm, device);
  return std::string(static_cast<const char*>(data.data_ptr()), static_cast<size_t>(n));
}

// Every rank's `bytes`, in rank order; sizes may differ (a collective).
inline std::vector<std::string> HostAllGatherBytes(const std::string& bytes, Communicator& comm,
                                                   const torch::Device& device) {
  torch::Tensor size = torch::full({1}, static_cast<int64_t>(bytes.size()), torch::kInt64);
  const torch::Tensor sizes = HostAllGather(size, comm, device);
  const int64_t words = std::max<int64_t>(1, host_internal::WordsFor(sizes.max().item<int64_t>()));
  const torch::Tensor all = HostAllGather(host_internal::PackBytes(bytes, words), comm, device);
  std::vector<std::string> out;
  for (int r = 0; r < comm.size(); ++r) {
    const char* begin = static_cast<const char*>(all.data_ptr()) + r * words * 8;
    out.emplace_back(begin, static_cast<size_t>(sizes[r].item<int64_t>()));
  }
  return out;
}

}  // namespace clipscale
