#include "distributed/nccl_watchdog.h"

#include "core/status.h"

namespace clipscale {

void CheckNccl(ncclResult_t rc, const char* call, int rank) {
  if (rc == ncclSuccess) return;
  const char* last = ncclGetLastError(nullptr);
  FatalError(__FILE__, __LINE__,
             absl::StrCat("rank ", rank, ": ", call, " failed: ", ncclGetErrorString(rc),
                          last != nullptr ? absl::StrCat(" (", last, ")") : std::string()));
}

void CheckCuda(cudaError_t rc, const char* call, int rank) {
  if (rc == cudaSuccess) return;
  FatalError(__FILE__, __LINE__,
             absl::StrCat("rank ", rank, ": ", call, " failed: ", cudaGetErrorString(rc)));
}

NcclWatchdog::NcclWatchdog(ncclComm_t comm, int rank, int device, double timeout_s)
    : comm_(comm), rank_(rank), device_(device), timeout_(timeout_s), thread_([this] { Loop(); }) {}

NcclWatchdog::~NcclWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (Pending& p : pending_) cudaEventDestroy(p.done);
}

void NcclWatchdog::Track(const std::string& name, cudaStream_t stream) {
  cudaEvent_t done = nullptr;
  CheckCuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate", rank_);
  CheckCuda(cudaEventRecord(done, stream), "cudaEventRecord", rank_);
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back({absl::StrCat(name, " #", ++issued_), done, std::chrono::steady_clock::now()});
}

void NcclWatchdog::Loop() {
  // Events belong to the device; query them from a thread bound to it.
  CheckCuda(cudaSetDevice(device_), "cudaSetDevice", rank_);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    // 100 ms: a hang is reported within the timeout plus a tenth of a second,
    // and the polling costs nothing measurable.
    wake_.wait_for(lock, std::chrono::milliseconds(100));
    if (!stop_) Poll();
  }
}

// Called with mu_ held.
void NcclWatchdog::Poll() {
  ncclResult_t async = ncclSuccess;
  CheckNccl(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError", rank_);
  if (async != ncclSuccess && async != ncclInProgress) {
    std::string where = pending_.empty() ? "no collective" : pending_.front().name;
    Fail(absl::StrCat("asynchronous NCCL error during ", where, ": ", ncclGetErrorString(async)));
  }
  while (!pending_.empty()) {
    Pending& front = pending_.front();
    cudaError_t state = cudaEventQuery(front.done);
    if (state == cudaSuccess) {
      cudaEventDestroy(front.done);
      pending_.pop_front();
      continue;
    }
    if (state != cudaErrorNotReady) {
      Fail(absl::StrCat(front.name, " failed: ", cudaGetErrorString(state)));
    }
    if (std::chrono::steady_clock::now() - front.start > timeout_) {
      Fail(absl::StrCat(front.name, " did not finish within ", timeout_.count(), " s"));
    }
    break;  // later collectives were issued later; they cannot have timed out first
  }
}

void NcclWatchdog::Fail(const std::string& what) {
  // Abort first so that peers blocked in this communicator see the failure too.
  ncclCommAbort(comm_);
  FatalError(__FILE__, __LINE__, absl::StrCat("rank ", rank_, ": NCCL collective ", what));
}

}  // namespace clipscale
