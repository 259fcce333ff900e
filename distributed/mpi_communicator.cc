#include "distributed/mpi_communicator.h"

#include <climits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <vector>

#include "core/status.h"
#include "distributed/mpi_util.h"

namespace clipscale {
namespace {

// MPI has no bf16/fp16: their elements travel as 16-bit words, and
// reductions over them use the ops below, which add (or compare) in fp32 and
// round each partial result back, as NCCL's bf16/fp16 collectives do.
bool Is16BitFloat(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf;
}

MPI_Datatype MpiType(const torch::Tensor& t, int rank) {
  switch (t.scalar_type()) {
    case torch::kFloat32:
      return MPI_FLOAT;
    case torch::kFloat64:
      return MPI_DOUBLE;
    case torch::kInt64:
      return MPI_INT64_T;
    case torch::kBFloat16:
    case torch::kHalf:
      return MPI_UINT16_T;
    default:
      CS_CHECK_MSG(false, "rank ", rank,
                   ": the MPI backend takes float32, float64, int64, bfloat16 or float16, not ",
                   std::string(c10::toString(t.scalar_type())));
  }
  return MPI_DATATYPE_NULL;
}

template <class T, bool kMax>
void Combine16(void* in, void* inout, int* len, MPI_Datatype* /*type*/) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = static_cast<float>(a[i]), y = static_cast<float>(b[i]);
    b[i] = static_cast<T>(kMax ? (x > y || x != x ? x : y) : x + y);  // max keeps a NaN
  }
}

MPI_Op CreateOp(MPI_User_function* f) {
  MPI_Op op = MPI_OP_NULL;
  CheckMpi(MPI_Op_create(f, /*commute=*/1, &op), "MPI_Op_create", MPI_COMM_WORLD);
  return op;
}

MPI_Op MpiOp(const torch::Tensor& t, ReduceOp op) {
  if (!Is16BitFloat(t)) return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM;
  // Created once, after MPI_Init (a communicator exists); MPI frees them at finalize.
  static const MPI_Op ops[2][2] = {
      {CreateOp(&Combine16<c10::BFloat16, false>), CreateOp(&Combine16<c10::BFloat16, true>)},
      {CreateOp(&Combine16<c10::Half, false>), CreateOp(&Combine16<c10::Half, true>)}};
  return ops[t.scalar_type() == torch::kHalf][op == ReduceOp::kMax];
}

// MPI counts are ints; larger tensors would need chunking, which no caller needs.
int CheckedCount(const torch::Tensor& t, int rank, const char* op) {
  CS_CHECK_MSG(t.defined() && t.device().is_cpu() && t.is_contiguous(), "rank ", rank, ": ", op,
               " needs a defined, contiguous CPU tensor");
  CS_CHECK_MSG(t.numel() <= INT_MAX, "rank ", rank, ": ", op, " of ", t.numel(),
               " elements exceeds MPI's int count");
  return static_cast<int>(t.numel());
}

class MpiWork : public CommWork {
 public:
  MpiWork(MPI_Request request, torch::Tensor tensor)
      : request_(request), tensor_(std::move(tensor)) {}
  ~MpiWork() override { Wait(); }
  void Wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    CheckMpi(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait(MPI_Iallreduce)", MPI_COMM_WORLD);
  }
  bool Progress() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;  // MPI_Test frees a completed request and sets it to MPI_REQUEST_NULL
    CheckMpi(MPI_Test(&request_, &done, MPI_STATUS_IGNORE), "MPI_Test(MPI_Iallreduce)",
             MPI_COMM_WORLD);
    return done != 0;
  }

 private:
  MPI_Request request_;
  torch::Tensor tensor_;  // keeps the buffer alive while MPI writes to it
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent) : comm_(DupCommunicator(parent)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  local_rank_ = LocalRankOnHost(comm_);
}

MpiCommunicator::~MpiCommunicator() { FreeCommunicator(&comm_); }

torch::Tensor MpiCommunicator::AllGather(const torch::Tensor& input) {
  int count = CheckedCount(input, rank_, "AllGather");
  CS_CHECK_MSG(input.dim() >= 1, "rank ", rank_, ": AllGather needs a tensor with a dim 0");
  std::vector<int64_t> shape = input.sizes().vec();
  shape[0] *= size_;
  torch::Tensor output = torch::empty(shape, input.options());
  MPI_Datatype type = MpiType(input, rank_);
  CheckMpi(MPI_Allgather(input.data_ptr(), count, type, output.data_ptr(), count, type, comm_),
           "MPI_Allgather", comm_);
  return output;
}

torch::Tensor MpiCommunicator::ReduceScatter(const torch::Tensor& input) {
  int count = CheckedCount(input, rank_, "ReduceScatter");
  CS_CHECK_MSG(input.dim() >= 1 && input.size(0) % size_ == 0, "rank ", rank_,
               ": ReduceScatter needs dim 0 divisible by ", size_);
  std::vector<int64_t> shape = input.sizes().vec();
  shape[0] /= size_;
  torch::Tensor output = torch::empty(shape, input.options());
  CheckMpi(MPI_Reduce_scatter_block(input.data_ptr(), output.data_ptr(), count / size_,
                                    MpiType(input, rank_), MpiOp(input, ReduceOp::kSum), comm_),
           "MPI_Reduce_scatter_block", comm_);
  return output;
}

void MpiCommunicator::AllReduce(torch::Tensor& tensor, ReduceOp op) {
  int count = CheckedCount(tensor, rank_, "AllReduce");
  CheckMpi(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), count, MpiType(tensor, rank_), MpiOp(tensor, op),
                         comm_),
           "MPI_Allreduce", comm_);
}

std::unique_ptr<CommWork> MpiCommunicator::AllReduceAsync(torch::Tensor& tensor, ReduceOp op) {
  int count = CheckedCount(tensor, rank_, "AllReduceAsync");
  MPI_Request request = MPI_REQUEST_NULL;
  CheckMpi(MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), count, MpiType(tensor, rank_), MpiOp(tensor, op),
                          comm_, &request),
           "MPI_Iallreduce", comm_);
  return std::make_unique<MpiWork>(request, tensor);
}

void MpiCommunicator::Broadcast(torch::Tensor& tensor, int root) {
  int count = CheckedCount(tensor, rank_, "Broadcast");
  CS_CHECK_MSG(root >= 0 && root < size_, "rank ", rank_, ": Broadcast root ", root,
               " is outside [0, ", size_, ")");
  CheckMpi(MPI_Bcast(tensor.data_ptr(), count, MpiType(tensor, rank_), root, comm_), "MPI_Bcast",
           comm_);
}

void MpiCommunicator::Barrier() { CheckMpi(MPI_Barrier(comm_), "MPI_Barrier", comm_); }

}  // namespace clipscale
