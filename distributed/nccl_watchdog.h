// Watches a NCCL communicator's collectives from a thread of its own, so that
// a hung or failed collective ends the job with a message instead of a hang.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace clipscale {

// Aborts with the rank and the call when rc is not ncclSuccess.
void CheckNccl(ncclResult_t rc, const char* call, int rank);
void CheckCuda(cudaError_t rc, const char* call, int rank);

class NcclWatchdog {
 public:
  NcclWatchdog(ncclComm_t comm, int rank, int device, double timeout_s);
  // Stops the thread; collectives still in flight are no longer watched.
  ~NcclWatchdog();
  NcclWatchdog(const NcclWatchdog&) = delete;
  NcclWatchdog& operator=(const NcclWatchdog&) = delete;

  // Marks the end of collective `name` on `stream`; it must complete within the timeout.
  void Track(const std::string& name, cudaStream_t stream);

 private:
  struct Pending {
    std::string name;
    cudaEvent_t done;
    std::chrono::steady_clock::time_point start;
  };

  void Loop();
  void Poll();
  [[noreturn]] void Fail(const std::string& what);

  ncclComm_t comm_;
  int rank_;
  int device_;
  std::chrono::duration<double> timeout_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::deque<Pending> pending_;  // in issue order, so the front finishes first
  unsigned long long issued_ = 0;
  std::thread thread_;  // last: starts after the members it reads exist
};

}  // namespace clipscale
