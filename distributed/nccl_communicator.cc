#include "distributed/nccl_communicator.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <climits>
#include <optional>
#include <vector>

#include "core/status.h"
#include "distributed/launch_env.h"
#include "distributed/mpi_util.h"
#include "distributed/nccl_watchdog.h"

namespace clipscale {
namespace {

ncclDataType_t NcclType(const torch::Tensor& t, int rank) {
  switch (t.scalar_type()) {
    case torch::kFloat32:
      return ncclFloat32;
    case torch::kFloat64:
      return ncclFloat64;
    case torch::kFloat16:
      return ncclFloat16;
    case torch::kBFloat16:
      return ncclBfloat16;
    case torch::kInt32:
      return ncclInt32;
    case torch::kInt64:
      return ncclInt64;
    default:
      CS_CHECK_MSG(false, "rank ", rank, ": NCCL does not take ",
                   std::string(c10::toString(t.scalar_type())));
  }
  return ncclFloat32;
}

ncclRedOp_t NcclOp(ReduceOp op) { return op == ReduceOp::kMax ? ncclMax : ncclSum; }

// Makes `waiter` wait, on the device, for the work queued so far on `producer`.
void StreamWait(cudaStream_t waiter, cudaStream_t producer, cudaEvent_t scratch, int rank) {
  CheckCuda(cudaEventRecord(scratch, producer), "cudaEventRecord", rank);
  CheckCuda(cudaStreamWaitEvent(waiter, scratch, 0), "cudaStreamWaitEvent", rank);
}

class NcclWork : public CommWork {
 public:
  NcclWork(cudaEvent_t done, int device, int rank) : done_(done), device_(device), rank_(rank) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void Wait() override {
    cudaStream_t current = c10::cuda::getCurrentCUDAStream(device_).stream();
    CheckCuda(cudaStreamWaitEvent(current, done_, 0), "cudaStreamWaitEvent", rank_);
  }

 private:
  cudaEvent_t done_;
  int device_;
  int rank_;
};

class NcclCommunicator : public Communicator {
 public:
  explicit NcclCommunicator(double timeout_s) {
    MPI_Comm world = DupCommunicator(MPI_COMM_WORLD);
    MPI_Comm_rank(world, &rank_);
    MPI_Comm_size(world, &size_);
    local_rank_ = LocalRankOnHost(world);
    int devices = 0;
    CheckCuda(cudaGetDeviceCount(&devices), "cudaGetDeviceCount", rank_);
    auto device = DeviceForLocalRank(local_rank_, devices);
    CS_CHECK_MSG(device.ok(), "rank ", rank_, ": the NCCL backend: ", device.status().message());
    device_ = *device;
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_));
    ncclUniqueId id;
    if (rank_ == 0) CheckNccl(ncclGetUniqueId(&id), "ncclGetUniqueId", rank_);
    CheckMpi(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, world), "MPI_Bcast(ncclUniqueId)", world);
    FreeCommunicator(&world);
    CheckNccl(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank", rank_);
    stream_.emplace(c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device_)));
    CheckCuda(cudaEventCreateWithFlags(&scratch_, cudaEventDisableTiming), "cudaEventCreate",
              rank_);
    watchdog_.emplace(comm_, rank_, device_, timeout_s);
  }

  ~NcclCommunicator() override {
    cudaStreamSynchronize(stream_->stream());
    watchdog_.reset();
    cudaEventDestroy(scratch_);
    ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string backend() const override { return "nccl"; }

  torch::Tensor AllGather(const torch::Tensor& input) override {
    size_t count = Count(input, "AllGather");
    CS_CHECK_MSG(input.dim() >= 1, "rank ", rank_, ": AllGather needs a tensor with a dim 0");
    std::vector<int64_t> shape = input.sizes().vec();
    shape[0] *= size_;
    torch::Tensor output = torch::empty(shape, input.options());
    Run("ncclAllGather", [&](cudaStream_t s) {
      return ncclAllGather(input.data_ptr(), output.data_ptr(), count, NcclType(input, rank_),
                           comm_, s);
    });
    return output;
  }

  torch::Tensor ReduceScatter(const torch::Tensor& input) override {
    size_t count = Count(input, "ReduceScatter");
    CS_CHECK_MSG(input.dim() >= 1 && input.size(0) % size_ == 0, "rank ", rank_,
                 ": ReduceScatter needs dim 0 divisible by ", size_);
    std::vector<int64_t> shape = input.sizes().vec();
    shape[0] /= size_;
    torch::Tensor output = torch::empty(shape, input.options());
    Run("ncclReduceScatter", [&](cudaStream_t s) {
      return ncclReduceScatter(input.data_ptr(), output.data_ptr(), count / size_,
                               NcclType(input, rank_), ncclSum, comm_, s);
    });
    return output;
  }

  void AllReduce(torch::Tensor& tensor, ReduceOp op) override {
    size_t count = Count(tensor, "AllReduce");
    Run("ncclAllReduce", [&](cudaStream_t s) {
      return ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), count, NcclType(tensor, rank_),
                           NcclOp(op), comm_, s);
    });
  }

  std::unique_ptr<CommWork> AllReduceAsync(torch::Tensor& tensor, ReduceOp op) override {
    size_t count = Count(tensor, "AllReduceAsync");
    Issue("ncclAllReduce(async)", [&](cudaStream_t s) {
      return ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), count, NcclType(tensor, rank_),
                           NcclOp(op), comm_, s);
    });
    // The caller may drop the tensor before Wait(); keep its memory from being
    // reused by the current stream until the NCCL stream is done with it.
    c10::cuda::CUDACachingAllocator::recordStream(tensor.storage().data_ptr(), *stream_);
    cudaEvent_t done = nullptr;
    CheckCuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate", rank_);
    CheckCuda(cudaEventRecord(done, stream_->stream()), "cudaEventRecord", rank_);
    return std::make_unique<NcclWork>(done, device_, rank_);
  }

  void Broadcast(torch::Tensor& tensor, int root) override {
    size_t count = Count(tensor, "Broadcast");
    CS_CHECK_MSG(root >= 0 && root < size_, "rank ", rank_, ": Broadcast root ", root,
                 " is outside [0, ", size_, ")");
    Run("ncclBroadcast", [&](cudaStream_t s) {
      return ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), count, NcclType(tensor, rank_),
                           root, comm_, s);
    });
  }

  // NCCL has no barrier: an all-reduce of one value that the host waits for.
  void Barrier() override {
    torch::Tensor one =
        torch::ones({1}, torch::TensorOptions().dtype(torch::kInt32).device(torch::kCUDA, device_));
    AllReduce(one, ReduceOp::kSum);
    CheckCuda(cudaStreamSynchronize(stream_->stream()), "cudaStreamSynchronize(Barrier)", rank_);
  }

 private:
  size_t Count(const torch::Tensor& t, const char* op) const {
    CS_CHECK_MSG(t.defined() && t.is_cuda() && t.get_device() == device_ && t.is_contiguous(),
                 "rank ", rank_, ": ", op, " needs a contiguous tensor on cuda:", device_);
    return static_cast<size_t>(t.numel());
  }

  // Enqueues `call` on the NCCL stream after the current stream's work.
  template <class Call>
  void Issue(const char* name, Call&& call) {
    cudaStream_t current = c10::cuda::getCurrentCUDAStream(device_).stream();
    StreamWait(stream_->stream(), current, scratch_, rank_);
    CheckNccl(call(stream_->stream()), name, rank_);
    watchdog_->Track(name, stream_->stream());
  }

  // Issue, then make the current stream wait for the result.
  template <class Call>
  void Run(const char* name, Call&& call) {
    Issue(name, std::forward<Call>(call));
    cudaStream_t current = c10::cuda::getCurrentCUDAStream(device_).stream();
    StreamWait(current, stream_->stream(), scratch_, rank_);
  }

  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  std::optional<c10::cuda::CUDAStream> stream_;  // optional: no default constructor
  cudaEvent_t scratch_ = nullptr;
  std::optional<NcclWatchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> CreateNcclCommunicator(double timeout_s) {
  return std::make_unique<NcclCommunicator>(timeout_s);
}

}  // namespace clipscale
