// The Slurm allocation as `clipscale launch` reads it, and what it reads in
// srun's and mpirun's own words when a task or a host fails.
#include "launcher/coordinator/slurm_env.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>

#include "launcher/coordinator/worker_job.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

TEST(SlurmEnv, ExpandsTasksPerNode) {
  EXPECT_EQ(*ExpandTasksPerNode("2"), std::vector<int>({2}));
  EXPECT_EQ(*ExpandTasksPerNode("2(x3),1"), std::vector<int>({2, 2, 2, 1}));
  EXPECT_EQ(*ExpandTasksPerNode("8(x2)"), std::vector<int>({8, 8}));
  EXPECT_EQ(*ExpandTasksPerNode("4,4(x1),3"), std::vector<int>({4, 4, 3}));
  for (const char* bad : {"", "x", "2(x", "2(x0)", "0", "2(3)", "2,,1", "-1", "2(x3)1"}) {
    auto tasks = ExpandTasksPerNode(bad);
    ASSERT_FALSE(tasks.ok()) << bad;
    EXPECT_NE(std::string(tasks.status().message()).find(std::string("'") + bad + "'"),
              std::string::npos)
        << tasks.status();
  }
  // A count that would make us allocate billions of entries is refused first.
  auto huge = ExpandTasksPerNode("1(x2000000000)");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(std::string(huge.status().message()).find("more than"), std::string::npos);
}

TEST(SlurmEnv, OutsideAnAllocationSaysSo) {
  auto nodes = AllocationNodes({{"PATH", "/usr/bin"}});
  ASSERT_FALSE(nodes.ok());
  EXPECT_EQ(nodes.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(nodes.status().message()).find("not inside a Slurm allocation"),
            std::string::npos);
}

TEST(SlurmEnv, ReadsTheNodesThroughScontrol) {
  // `scontrol show hostnames` expands a node list without a controller, but
  // reads a slurm.conf first (inside an allocation there always is one).
  const std::string conf = testing::MakeTempDir() + "/slurm.conf";
  std::ofstream(conf) << "ClusterName=unit\nSlurmctldHost=localhost\n";
  ::setenv("SLURM_CONF", conf.c_str(), 1);
  auto nodes = AllocationNodes({{"SLURM_JOB_ID", "7"},
                                {"SLURM_JOB_NODELIST", "gpu[01-02,07]"},
                                {"SLURM_TASKS_PER_NODE", "8(x2),4"}});
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 3u);
  EXPECT_EQ((*nodes)[0], std::make_pair(std::string("gpu01"), 8));
  EXPECT_EQ((*nodes)[1], std::make_pair(std::string("gpu02"), 8));
  EXPECT_EQ((*nodes)[2], std::make_pair(std::string("gpu07"), 4));
  auto mismatch = AllocationNodes({{"SLURM_JOB_ID", "7"},
                                   {"SLURM_JOB_NODELIST", "gpu[01-02]"},
                                   {"SLURM_TASKS_PER_NODE", "8(x3)"}});
  EXPECT_FALSE(mismatch.ok());
}

// srun's report of the first task that failed names the rank and its node.
TEST(WorkerJob, ReadsSrunsVerdict) {
  auto job = WorkerJob::Start(
      {"sh", "-c",
       "echo 'srun: error: node7: task 3: Exited with exit code 1' >&2; "
       "echo 'srun: error: node7: tasks 0-2: Killed' >&2; exit 1"},
      {"PATH=/usr/bin:/bin"});
  ASSERT_TRUE(job.ok()) << job.status();
  while (!(*job)->Poll()) usleep(10000);
  (*job)->Finish();
  const MpirunVerdict verdict = (*job)->verdict();
  EXPECT_EQ(verdict.rank, 3);
  EXPECT_EQ(verdict.host, "node7");
  EXPECT_EQ(verdict.what, "Exited with exit code 1");
}

// mpirun's word on a host whose daemon could not connect back names no rank,
// but the host: the launch's summary says which one.
TEST(WorkerJob, ReadsTheHostMpirunCouldNotReach) {
  auto job = WorkerJob::Start(
      {"sh", "-c",
       "printf '%s\\n' 'A process or daemon was unable to complete a TCP connection' "
       "'to another process:' '  Local host:    hostc' '  Remote host:   hosta' >&2; exit 1"},
      {"PATH=/usr/bin:/bin"});
  ASSERT_TRUE(job.ok()) << job.status();
  while (!(*job)->Poll()) usleep(10000);
  (*job)->Finish();
  const MpirunVerdict verdict = (*job)->verdict();
  EXPECT_EQ(verdict.rank, -1);
  EXPECT_EQ(verdict.host, "hostc");
  EXPECT_NE(verdict.what.find("mpirun's daemon on hostc could not connect back"), std::string::npos)
      << verdict.what;
}

}  // namespace
}  // namespace clipscale
