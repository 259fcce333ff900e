// Single-process tests: launcher variables parsed from synthetic environments,
// the local backend's identities, and the factory's errors without MPI.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

#include "distributed/communicator_factory.h"
#include "distributed/launch_env.h"
#include "distributed/local_communicator.h"

namespace clipscale {
namespace {

LaunchEnv ParseOk(const EnvMap& env) {
  absl::StatusOr<LaunchEnv> parsed = ParseLaunchEnv(env);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.value_or(LaunchEnv());
}

void ExpectEnv(const LaunchEnv& env, int rank, int size, int local, const std::string& launcher) {
  EXPECT_EQ(env.rank, rank);
  EXPECT_EQ(env.world_size, size);
  EXPECT_EQ(env.local_rank, local);
  EXPECT_EQ(env.launcher, launcher);
}

TEST(LaunchEnv, NoLauncherIsOneRank) { ExpectEnv(ParseOk({{"HOME", "/root"}}), 0, 1, 0, "none"); }

// An sbatch script (as Slurm 22.05 sets it up for -n 2: PROCID, NTASKS and
// LOCALID, but no step) is one process, not rank 0 of 2: `clipscale launch`
// and `clipscale train` run there must not start MPI as a rank.
TEST(LaunchEnv, ASlurmBatchScriptIsNoRank) {
  ExpectEnv(ParseOk({{"SLURM_JOB_ID", "9"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"},
                     {"SLURM_LOCALID", "0"}}),
            0, 1, 0, "none");
}

TEST(LaunchEnv, EachLauncher) {
  ExpectEnv(ParseOk({{"OMPI_COMM_WORLD_RANK", "3"},
                     {"OMPI_COMM_WORLD_SIZE", "8"},
                     {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}}),
            3, 8, 1, "openmpi");
  ExpectEnv(ParseOk({{"PMI_RANK", "5"}, {"PMI_SIZE", "6"}, {"MPI_LOCALRANKID", "2"}}), 5, 6, 2,
            "pmi");
  ExpectEnv(ParseOk({{"SLURM_PROCID", "7"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "3"},
                     {"SLURM_STEP_ID", "0"}}),
            7, 16, 3, "slurm");
  ExpectEnv(ParseOk({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}}), 1, 2, 1,
            "torchrun");
}

// One rule for the trainer and the NCCL communicator: local rank modulo the
// devices this rank sees.
TEST(LaunchEnv, DeviceForLocalRank) {
  EXPECT_EQ(*DeviceForLocalRank(0, 8), 0);
  EXPECT_EQ(*DeviceForLocalRank(5, 8), 5);
  EXPECT_EQ(*DeviceForLocalRank(3, 1), 0);  // srun --gpus-per-task=1: the one it sees
  EXPECT_EQ(*DeviceForLocalRank(9, 4), 1);  // more ranks than GPUs: shared round-robin
  auto none = DeviceForLocalRank(2, 0);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(std::string(none.status().message()).find("sees no CUDA device"), std::string::npos);
}

TEST(LaunchEnv, LocalSize) {
  auto local_size = [](EnvMap env) { return ParseOk(std::move(env)).local_size; };
  EXPECT_EQ(local_size({{"OMPI_COMM_WORLD_RANK", "3"},
                        {"OMPI_COMM_WORLD_SIZE", "8"},
                        {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                        {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}}),
            4);
  EXPECT_EQ(local_size({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"},
                        {"LOCAL_WORLD_SIZE", "2"}}),
            2);
  // Unknown: 1 (one rank's threads then take all the cores they are given).
  EXPECT_EQ(local_size({{"SLURM_PROCID", "7"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "3"},
                        {"SLURM_STEP_ID", "0"}}),
            1);
  EXPECT_FALSE(ParseLaunchEnv({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "0"},
                               {"MPI_LOCALNRANKS", "two"}})
                   .ok());
}

TEST(LaunchEnv, MpiLauncherWinsOverTheSlurmAllocationItRunsIn) {
  // mpirun inside sbatch: SLURM_* describe the batch step (task 0 of 1).
  ExpectEnv(ParseOk({{"SLURM_PROCID", "0"},
                     {"SLURM_NTASKS", "1"},
                     {"SLURM_LOCALID", "0"},
                     {"OMPI_COMM_WORLD_RANK", "2"},
                     {"OMPI_COMM_WORLD_SIZE", "4"},
                     {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}}),
            2, 4, 0, "openmpi");
  // srun --mpi=pmi2 sets PMI_* and SLURM_LOCALID but not MPI_LOCALRANKID.
  ExpectEnv(ParseOk({{"PMI_RANK", "3"},
                     {"PMI_SIZE", "4"},
                     {"SLURM_PROCID", "3"},
                     {"SLURM_NTASKS", "4"},
                     {"SLURM_LOCALID", "1"}}),
            3, 4, 1, "pmi");
}

TEST(LaunchEnv, SingleRankNeedsNoLocalRank) {
  ExpectEnv(ParseOk({{"RANK", "0"}, {"WORLD_SIZE", "1"}}), 0, 1, 0, "torchrun");
}

TEST(LaunchEnv, RejectsBadValuesNamingTheVariable) {
  struct Case {
    EnvMap env;
    std::string names;
  };
  const Case cases[] = {
      {{{"RANK", "x1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK"},
      {{{"RANK", "1 "}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK"},
      {{{"RANK", ""}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK"},
      {{{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK"},
      {{{"RANK", "-1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK"},
      {{{"RANK", "0"}, {"LOCAL_RANK", "0"}}, "WORLD_SIZE"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "0"}}, "WORLD_SIZE"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "2"}}, "LOCAL_RANK"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "2"}}, "LOCAL_RANK"},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "99999999999"}, {"SLURM_STEP_ID", "0"}},
       "SLURM_NTASKS"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<LaunchEnv> parsed = ParseLaunchEnv(c.env);
    ASSERT_FALSE(parsed.ok()) << c.names;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.names), std::string::npos) << parsed.status();
  }
}

TEST(LaunchEnv, ProcessEnvironmentSeesSetenv) {
  setenv("CLIPSCALE_LAUNCH_ENV_TEST", "a=b", 1);
  EXPECT_EQ(ProcessEnvironment()["CLIPSCALE_LAUNCH_ENV_TEST"], "a=b");
  unsetenv("CLIPSCALE_LAUNCH_ENV_TEST");
}

TEST(LocalCommunicator, CollectivesAreIdentities) {
  LocalCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_EQ(comm.local_rank(), 0);
  torch::Tensor x = torch::arange(12, torch::kFloat64).reshape({4, 3}) * 0.1;
  torch::Tensor before = x.clone();
  torch::Tensor gathered = comm.AllGather(x);
  EXPECT_TRUE(torch::equal(gathered, x));
  gathered.add_(1);  // a fresh output, as other backends give
  torch::Tensor scattered = comm.ReduceScatter(x);
  EXPECT_TRUE(torch::equal(scattered, x));
  scattered.add_(1);
  comm.AllReduce(x, ReduceOp::kSum);
  comm.AllReduce(x, ReduceOp::kMax);
  comm.AllReduceAsync(x, ReduceOp::kSum)->Wait();
  comm.Broadcast(x, 0);
  comm.Barrier();
  EXPECT_TRUE(torch::equal(x, before));
}

TEST(CommunicatorFactory, WithoutMpi) {
  auto local = CreateCommunicator(CommunicatorOptions());
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ((*local)->backend(), "local");
  EXPECT_EQ(CreateCommunicator(CommunicatorOptions().set_backend("mpi")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CreateCommunicator(CommunicatorOptions().set_backend("gloo")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCommunicator(CommunicatorOptions().set_nccl_timeout_s(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusCode nccl =
      CreateCommunicator(CommunicatorOptions().set_backend("nccl")).status().code();
  EXPECT_TRUE(nccl == absl::StatusCode::kFailedPrecondition ||
              nccl == absl::StatusCode::kUnimplemented)
      << static_cast<int>(nccl);
}

TEST(CommunicatorFactory, RefusesToRunLaunchedRanksApart) {
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "2", 1);
  setenv("LOCAL_RANK", "0", 1);
  auto comm = CreateCommunicator(CommunicatorOptions());
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
  unsetenv("LOCAL_RANK");
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
}

}  // namespace
}  // namespace clipscale
