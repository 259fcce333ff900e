// Multi-rank tests of the communicators, run by ctest under mpiexec (NP 2 and
// 4 for MPI; NP 1 with a GPU for NCCL). Every rank checks exact values: the
// inputs are small multiples of 1/8, so every partial sum is exactly
// representable in its dtype (float32, or bf16/fp16 for Value16) and the
// result cannot depend on reduction order.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "core/status.h"
#include "distributed/communicator_factory.h"
#include "distributed/launch_env.h"
#include "distributed/mpi_communicator.h"
#include "distributed/mpi_runtime.h"
#include "tests/test_util.h"
#if CLIPSCALE_TEST_NCCL
#include <ATen/cuda/Sleep.h>
#endif

namespace clipscale {
namespace {

class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    auto runtime = MpiRuntime::Init(nullptr, nullptr);
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    runtime_ = std::move(*runtime);
  }
  void TearDown() override { runtime_.reset(); }

 private:
  std::unique_ptr<MpiRuntime> runtime_;
};
::testing::Environment* const kMpi = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

// Uneven per rank and per element; the maximum moves between ranks with i.
double Value(int rank, int64_t i) {
  return ((i * 7 + rank * 3) % 11) * 64.0 + rank * 0.5 + i * 0.125;
}
// For bf16/fp16 (8 and 11 significant bits): halves in [-5, 7.5], whose sums
// over up to 4 ranks stay exact in either type.
double Value16(int rank, int64_t i) { return ((i * 7 + rank * 3) % 11) - 5 + rank * 0.5; }
int64_t Value64(int rank, int64_t i) {
  return (int64_t{1} << 40) * (rank + 1) + i * 3 - rank * ((i % 3) + 1);
}

// This rank's input: Value or Value64 laid out over `shape`, as `dtype` on `device`.
torch::Tensor Input(int rank, std::vector<int64_t> shape, torch::ScalarType dtype,
                    torch::Device device = torch::kCPU) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  torch::Tensor t = torch::empty({n}, torch::kFloat64);
  torch::Tensor t64 = torch::empty({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    t[i] = Value(rank, i);
    t64[i] = Value64(rank, i);
  }
  if (dtype == torch::kBFloat16 || dtype == torch::kHalf) {
    for (int64_t i = 0; i < n; ++i) t[i] = Value16(rank, i);
  }
  torch::Tensor out = dtype == torch::kInt64 ? t64 : t.to(dtype);
  return out.reshape(shape).to(device);
}

// What `op` over all ranks' inputs must give, computed on the host in the
// input's own dtype (exact, see the file comment).
torch::Tensor Reduced(int size, std::vector<int64_t> shape, torch::ScalarType dtype, ReduceOp op) {
  torch::Tensor acc = Input(0, shape, dtype);
  for (int r = 1; r < size; ++r) {
    torch::Tensor x = Input(r, shape, dtype);
    acc = op == ReduceOp::kSum ? acc + x : torch::maximum(acc, x);
  }
  return acc;
}

const torch::ScalarType kTypes[] = {torch::kFloat32, torch::kFloat64, torch::kInt64,
                                    torch::kBFloat16, torch::kHalf};

void CheckAllGather(Communicator& comm, torch::Device device) {
  for (torch::ScalarType dtype : kTypes) {
    torch::Tensor out = comm.AllGather(Input(comm.rank(), {3, 2}, dtype, device)).cpu();
    std::vector<torch::Tensor> parts;
    for (int r = 0; r < comm.size(); ++r) parts.push_back(Input(r, {3, 2}, dtype));
    EXPECT_TRUE(torch::equal(out, torch::cat(parts))) << "rank " << comm.rank() << " " << dtype;
  }
}

void CheckReduceScatter(Communicator& comm, torch::Device device) {
  for (torch::ScalarType dtype : kTypes) {
    std::vector<int64_t> shape = {2 * comm.size(), 3};
    torch::Tensor out = comm.ReduceScatter(Input(comm.rank(), shape, dtype, device)).cpu();
    torch::Tensor want =
        Reduced(comm.size(), shape, dtype, ReduceOp::kSum).narrow(0, 2 * comm.rank(), 2);
    EXPECT_TRUE(torch::equal(out, want)) << "rank " << comm.rank() << " " << dtype << "\n" << out;
  }
}

void CheckAllReduce(Communicator& comm, torch::Device device) {
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax}) {
    for (torch::ScalarType dtype : kTypes) {
      torch::Tensor t = Input(comm.rank(), {5, 7}, dtype, device);
      comm.AllReduce(t, op);
      EXPECT_TRUE(torch::equal(t.cpu(), Reduced(comm.size(), {5, 7}, dtype, op)))
          << "rank " << comm.rank() << " " << dtype << " op " << static_cast<int>(op);
    }
  }
}

void CheckBroadcast(Communicator& comm, torch::Device device) {
  for (int root : {comm.size() - 1, 0}) {
    for (torch::ScalarType dtype : kTypes) {
      torch::Tensor t = Input(comm.rank(), {4, 3}, dtype, device);
      comm.Broadcast(t, root);
      EXPECT_TRUE(torch::equal(t.cpu(), Input(root, {4, 3}, dtype)))
          << "rank " << comm.rank() << " root " << root << " " << dtype;
    }
  }
}

// A blocking collective issued while the asynchronous one is in flight must
// not disturb it (the overlap the gradient buckets rely on).
void CheckAllReduceAsync(Communicator& comm, torch::Device device) {
  torch::Tensor sum = Input(comm.rank(), {64}, torch::kFloat64, device);
  torch::Tensor max = Input(comm.rank(), {8, 8}, torch::kFloat32, device);
  std::unique_ptr<CommWork> sum_work = comm.AllReduceAsync(sum, ReduceOp::kSum);
  std::unique_ptr<CommWork> max_work = comm.AllReduceAsync(max, ReduceOp::kMax);
  torch::Tensor other = Input(comm.rank(), {5}, torch::kInt64, device);
  comm.Broadcast(other, 0);
  max_work->Wait();
  sum_work->Wait();
  EXPECT_TRUE(torch::equal(sum.cpu(), Reduced(comm.size(), {64}, torch::kFloat64, ReduceOp::kSum)));
  EXPECT_TRUE(
      torch::equal(max.cpu(), Reduced(comm.size(), {8, 8}, torch::kFloat32, ReduceOp::kMax)));
  EXPECT_TRUE(torch::equal(other.cpu(), Input(0, {5}, torch::kInt64)));
  // Polled to completion with Progress() alone (what the gradient hooks do),
  // the result is there before any Wait; Progress stays true afterwards.
  if (comm.backend() == "mpi") {
    torch::Tensor polled = Input(comm.rank(), {1000}, torch::kFloat32, device);
    std::unique_ptr<CommWork> work = comm.AllReduceAsync(polled, ReduceOp::kSum);
    while (!work->Progress()) {
    }
    EXPECT_TRUE(
        torch::equal(polled.cpu(), Reduced(comm.size(), {1000}, torch::kFloat32, ReduceOp::kSum)));
    EXPECT_TRUE(work->Progress());
    work->Wait();
  }
}

// Rank 0 creates a file only after a pause; every other rank must see it right
// after the barrier. Without a blocking barrier the others would look first.
void CheckBarrier(Communicator& comm) {
  torch::Tensor pid = torch::full({1}, static_cast<int64_t>(getpid()), torch::kInt64);
  MpiCommunicator cpu;  // rank 0's pid names the file; the CPU backend moves it
  cpu.Broadcast(pid, 0);
  std::string path = testing::BinaryDir() + "/comm_test_barrier_" +
                     std::to_string(pid.item<int64_t>()) + "_" + comm.backend();
  if (comm.rank() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr) << path;
    std::fclose(f);
  }
  comm.Barrier();
  EXPECT_TRUE(std::filesystem::exists(path))
      << "rank " << comm.rank() << " passed the barrier first";
  comm.Barrier();
  if (comm.rank() == 0) std::filesystem::remove(path);
}

TEST(MpiComm, RunsWithTheRanksItWasLaunchedWith) {
  MpiCommunicator comm;
  // A binary started without mpiexec is one rank; that is a failure, not a pass.
  ASSERT_GE(comm.size(), 2) << "comm_test must run under mpiexec with 2 or more ranks";
  if (const char* expected = std::getenv("CLIPSCALE_EXPECTED_RANKS")) {
    EXPECT_EQ(comm.size(), std::atoi(expected));
  }
  absl::StatusOr<LaunchEnv> env = ParseLaunchEnv(ProcessEnvironment());
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, "openmpi");
  EXPECT_EQ(env->rank, comm.rank());
  EXPECT_EQ(env->world_size, comm.size());
  EXPECT_EQ(env->local_rank, comm.local_rank());  // one host: both count every rank
  EXPECT_EQ(comm.backend(), "mpi");
}

TEST(MpiComm, AllGather) {
  MpiCommunicator comm;
  CheckAllGather(comm, torch::kCPU);
}
TEST(MpiComm, ReduceScatter) {
  MpiCommunicator comm;
  CheckReduceScatter(comm, torch::kCPU);
}
TEST(MpiComm, AllReduceSumAndMax) {
  MpiCommunicator comm;
  CheckAllReduce(comm, torch::kCPU);
}
TEST(MpiComm, Broadcast) {
  MpiCommunicator comm;
  CheckBroadcast(comm, torch::kCPU);
}
TEST(MpiComm, AllReduceAsync) {
  MpiCommunicator comm;
  CheckAllReduceAsync(comm, torch::kCPU);
}
TEST(MpiComm, Barrier) {
  MpiCommunicator comm;
  CheckBarrier(comm);
}

TEST(MpiComm, FactoryBuildsTheBackendsForSeveralRanks) {
  int size = MpiCommunicator().size();
  auto mpi = CreateCommunicator(CommunicatorOptions().set_backend("mpi"));
  ASSERT_TRUE(mpi.ok()) << mpi.status();
  EXPECT_EQ((*mpi)->backend(), "mpi");
  EXPECT_EQ((*mpi)->size(), size);
  auto local = CreateCommunicator(CommunicatorOptions().set_backend("local"));
  EXPECT_EQ(local.status().code(), absl::StatusCode::kFailedPrecondition);
  // "auto" picks NCCL whenever CUDA is visible; only try it where it can start.
  if (!torch::cuda::is_available()) {
    auto chosen = CreateCommunicator(CommunicatorOptions());
    ASSERT_TRUE(chosen.ok()) << chosen.status();
    EXPECT_EQ((*chosen)->backend(), "mpi");
  }
}

// NCCL on CUDA tensors, one GPU per rank. Skips, visibly, without enough GPUs.
class NcclComm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: NCCL not exercised";
    int size = MpiCommunicator().size();
    if (static_cast<int>(torch::cuda::device_count()) < size) {
      GTEST_SKIP() << size << " ranks but " << torch::cuda::device_count() << " GPUs";
    }
    auto comm = CreateCommunicator(CommunicatorOptions().set_backend("nccl"));
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = std::move(*comm);
    device_ = torch::Device(torch::kCUDA, comm_->local_rank() % torch::cuda::device_count());
  }
  std::unique_ptr<Communicator> comm_;
  torch::Device device_ = torch::kCPU;
};

TEST_F(NcclComm, AllGather) { CheckAllGather(*comm_, device_); }
TEST_F(NcclComm, ReduceScatter) { CheckReduceScatter(*comm_, device_); }
TEST_F(NcclComm, AllReduceSumAndMax) { CheckAllReduce(*comm_, device_); }
TEST_F(NcclComm, Broadcast) { CheckBroadcast(*comm_, device_); }
TEST_F(NcclComm, AllReduceAsync) { CheckAllReduceAsync(*comm_, device_); }
TEST_F(NcclComm, Barrier) { CheckBarrier(*comm_); }

// Runs in a child process (see the test below): a collective queued behind a
// ~17 s kernel with a 1 s timeout. Returning normally means the watchdog
// never fired, which the parent reports as a failure.
void HangPastTheTimeout() {
#if CLIPSCALE_TEST_NCCL
  auto comm = CreateCommunicator(CommunicatorOptions().set_backend("nccl").set_nccl_timeout_s(1));
  CS_CHECK_OK(comm.status());
  at::cuda::sleep(int64_t{1} << 35);  // clock cycles: ~17 s at 2 GHz
  torch::Tensor t = torch::ones({1}, torch::Device(torch::kCUDA, (*comm)->local_rank()));
  (*comm)->AllReduce(t, ReduceOp::kSum);
  torch::cuda::synchronize();
  std::fprintf(stderr, "the watchdog did not fire\n");
#endif
}

TEST(NcclWatchdog, EndsAHungCollectiveNamingRankAndCall) {
#if !CLIPSCALE_TEST_NCCL
  GTEST_SKIP() << "built without NCCL";
#endif
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: watchdog not exercised";
  if (std::getenv("CLIPSCALE_NCCL_HANG_CHILD")) return HangPastTheTimeout();
  // A fresh single-rank process (MPI singleton, launcher variables dropped),
  // because the watchdog ends the whole process.
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  testing::CommandResult child =
      testing::RunCommand("env -i PATH=\"$PATH\" HOME=\"$HOME\" CLIPSCALE_NCCL_HANG_CHILD=1 " +
                          testing::ShellQuote(self) + " --gtest_filter=NcclWatchdog.*");
  EXPECT_NE(child.exit_code, 0) << child.output;
  EXPECT_NE(child.output.find("rank 0: NCCL collective ncclAllReduce #1 did not finish"),
            std::string::npos)
      << child.output;
}

}  // namespace
}  // namespace clipscale
