// clipscale on a real Slurm: Debian's slurmctld and slurmd, started by the
// test as a one-machine cluster (auth/none, its own ports, state and spool in
// a folder of the build tree, task/affinity binding each task to its cores),
// driven with sbatch, srun, scancel and scontrol exactly as users drive them.
//   - the thread count a rank picks under srun follows its CPU binding;
//   - a script from `clipscale slurm` trains and evaluates;
//   - Slurm's warning signal: the ranks save, the script requeues the job, the
//     requeued job resumes and ends byte-identical to an undisturbed run;
//   - a rank that dies: `clipscale launch` restarts the step inside the
//     allocation (the job is not requeued), byte-identical again.
// The daemons are stopped by their pid files when the suite ends, also after
// a failed test; a run that crashed before is cleaned up at the next start.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include "core/file_util.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::RunCommand;
using testing::ShellQuote;

std::string Binary() { return testing::ClipscaleBinary(); }

const std::string& DataDir() {
  return testing::SharedSynthData("slurm_data", "--train 384 --val 40 --seed 5");
}

bool WaitFor(const std::function<bool()>& done, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return done();
}

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string Hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

// slurmctld + slurmd on this machine, for the whole suite.
class SlurmCluster {
 public:
  static std::string Root() { return testing::BinaryDir() + "/test_tmp/slurm_cluster"; }

  // Kills daemons a crashed earlier run left behind (by their pid files).
  static void StopDaemons() {
    for (const char* name : {"slurmd.pid", "slurmctld.pid"}) {
      const pid_t pid = Running(name);
      if (pid == 0) continue;
      ::kill(pid, SIGTERM);
      WaitFor([pid] { return ::kill(pid, 0) != 0; }, 10);
      ::kill(pid, SIGKILL);
    }
  }

  static std::string Start() {
    if (RunCommand("command -v slurmctld && command -v slurmd && command -v sbatch").exit_code != 0) {
      return "slurm-wlm is not installed (scripts/setup.sh installs it)";
    }
    StopDaemons();
    fs::remove_all(Root());
    fs::create_directories(Root() + "/state");
    fs::create_directories(Root() + "/spool");
    const std::string host = Hostname();
    const std::string conf = Root() + "/slurm.conf";
    std::ofstream(conf) << "ClusterName=clipscaletest\n"
                        << "SlurmctldHost=" << host << "(127.0.0.1)\n"
                        << "SlurmctldPort=" << FreePort() << "\n"
                        << "SlurmdPort=" << FreePort() << "\n"
                        << "AuthType=auth/none\nCredType=cred/none\n"
                           "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/affinity\n"
                           "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
                           "SlurmUser=root\nSlurmdUser=root\nMpiDefault=none\n"
                           "JobAcctGatherType=jobacct_gather/none\nReturnToService=2\n"
                           "MinJobAge=600\nKillWait=10\n"
                           // A requeued job may start again 6 s after it ended
                           // (its credential expires; default 120 s), and the
                           // scheduler looks for it every second.
                           "AuthInfo=cred_expire=5\nSchedulerParameters=bf_interval=1\n"
                        << "StateSaveLocation=" << Root() << "/state\n"
                        << "SlurmdSpoolDir=" << Root() << "/spool\n"
                        << "SlurmctldPidFile=" << Root() << "/slurmctld.pid\n"
                        << "SlurmdPidFile=" << Root() << "/slurmd.pid\n"
                        << "SlurmctldLogFile=" << Root() << "/slurmctld.log\n"
                        << "SlurmdLogFile=" << Root() << "/slurmd.log\n"
                        << "NodeName=" << host << " NodeAddr=127.0.0.1 CPUs="
                        << std::thread::hardware_concurrency() << " RealMemory=16000 State=UNKNOWN\n"
                        << "PartitionName=test Nodes=" << host
                        << " Default=YES MaxTime=INFINITE State=UP\n";
    ::setenv("SLURM_CONF", conf.c_str(), 1);  // for every command the tests run
    const CommandResult started =
        RunCommand("slurmctld -f " + ShellQuote(conf) + " && slurmd -f " + ShellQuote(conf));
    if (started.exit_code != 0) return "the daemons did not start: " + started.output;
    if (!WaitFor([] { return RunCommand("sinfo -h -o %t").output.find("idle") == 0; }, 60)) {
      return "the node did not come up: " + RunCommand("sinfo; tail -20 " + Root() + "/*.log").output;
    }
    return "";
  }

  // The pid in a daemon's pid file, if that process runs and is a Slurm
  // daemon (not another process that got the pid of one long gone).
  static pid_t Running(const char* pid_file) {
    auto text = ReadFile(Root() + "/" + pid_file);
    const pid_t pid = text.ok() ? std::atoi(text->c_str()) : 0;
    if (pid <= 1 || ::kill(pid, 0) != 0) return 0;
    auto comm = ReadFile("/proc/" + std::to_string(pid) + "/comm");
    return comm.ok() && comm->rfind("slurm", 0) == 0 ? pid : 0;
  }

  static void Stop() {
    if (Running("slurmctld.pid") && Running("slurmd.pid")) {
      RunCommand("scancel --quiet --user=root");
      WaitFor([] {
        const CommandResult q = RunCommand("squeue -h");
        return q.exit_code != 0 || q.output.empty();
      }, 30);
    }
    StopDaemons();
  }
};

class SlurmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { start_error_ = new std::string(SlurmCluster::Start()); }
  static void TearDownTestSuite() {
    SlurmCluster::Stop();
    delete start_error_;
  }
  void SetUp() override { ASSERT_EQ(*start_error_, "") << "the test's Slurm cluster"; }
  void TearDown() override {  // nothing of a failed test runs on into the next
    RunCommand("scancel --quiet --user=root");
    WaitFor([] { return RunCommand("squeue -h").output.empty(); }, 30);
  }

  static std::string* start_error_;
};
std::string* SlurmTest::start_error_ = nullptr;

// The tiny model of launch_test.cc, with evaluation on the val split: 24 steps
// of 32, a checkpoint every 4.
std::string WriteRecipe(const std::string& dir, const std::string& extra = "") {
  const std::string path = dir + "/recipe.yaml";
  std::ofstream(path)
      << testing::kTinyModelYaml << "data:\n  train: "
      << DataDir() << "/train\n  val: " << DataDir()
      << "/val\n  batch_size: 32\n"
         "schedule:\n  lr: 1.0e-3\n  warmup_steps: 4\n"
         "epochs: 2\nthreads: 1\nlog_every: 4\n"
         "checkpoint:\n  every_steps: 4\n"
         "launch:\n  heartbeat_s: 0.5\n  heartbeat_misses: 6\n  hang_min_s: 4\n"
         "  backoff_s: 0.2\n  startup_timeout_s: 120\n"
      << "output: " << dir << "/run\n"
      << extra;
  return path;
}

// The undisturbed run: plain mpirun with 2 ranks, outside Slurm.
const std::string& Reference() {
  static const std::string run = [] {
    const std::string dir = testing::BinaryDir() + "/test_tmp/slurm_reference";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string recipe = WriteRecipe(dir);
    const CommandResult r = RunCommand("env -u SLURM_CONF " + testing::Mpirun(2) +
                                       ShellQuote(Binary()) + " train --config " + ShellQuote(recipe));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return dir + "/run";
  }();
  return run;
}

std::string Bytes(const std::string& path) {
  auto bytes = ReadFile(path);
  return bytes.ok() ? *bytes : "(missing " + path + ")";
}

std::string JobField(const std::string& job, const std::string& field) {
  const std::string text = RunCommand("scontrol show job " + job).output;
  std::smatch m;
  if (std::regex_search(text, m, std::regex(field + "=(\\S*)"))) return m[1];
  return "";
}

std::string WriteScript(const std::string& dir, const std::string& recipe) {
  const std::string script = dir + "/job.sbatch";
  const CommandResult r =
      RunCommand("(" + ShellQuote(Binary()) + " slurm --config " + ShellQuote(recipe) +
                 " --nodes 1 --tasks-per-node 2 --cpus-per-task 1 --time 15:00 --signal-seconds 60"
                 " > " + ShellQuote(script) + ")");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return script;
}

std::string Submit(const std::string& script, const std::string& env = "") {
  const CommandResult r = RunCommand("sbatch --parsable" +
                                     (env.empty() ? "" : " --export=ALL," + env) + " " +
                                     ShellQuote(script));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string id = r.output.substr(0, r.output.find_first_of(";\n"));
  return r.exit_code == 0 && !id.empty() && id.find_first_not_of("0123456789") == std::string::npos
             ? id
             : "";
}

bool Ended(const std::string& job) {
  const std::string state = JobField(job, "JobState");
  return state == "COMPLETED" || state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT" ||
         state == "NODE_FAIL" || state == "OUT_OF_MEMORY";
}

// What the job wrote to its log (all runs of it: --open-mode=append).
std::string Log(const std::string& run, const std::string& job) {
  return Bytes(run + "/slurm-" + job + ".out");
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// srun sets no SLURM_NTASKS_PER_NODE: the old rule took each rank to be alone
// on its node and gave both ranks all the cores. Now the rank's CPU binding
// decides, and the ranks found through MPI that may use the same CPUs.
TEST_F(SlurmTest, ThreadsPerRankFollowTheCpusSrunGives) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "max_steps: 2\n");
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  ASSERT_GE(cpus, 2) << "needs 2 cores";
  auto threads = [&](const std::string& srun) {
    const CommandResult r = RunCommand("timeout -k 5 300 " + srun + " " + ShellQuote(Binary()) +
                                       " train --config " + ShellQuote(recipe) +
                                       " --set threads=0 --set schedule.warmup_steps=0 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(r.output, m, std::regex("threads per rank: [^\n]*")))
        << r.output;
    return m.str();
  };
  // task/affinity binds each of 2 tasks to one core of its own.
  EXPECT_EQ(threads("srun --mpi=pmix -n 2 --cpu-bind=cores"),
            "threads per rank: 1 to 1; rank 0: 1 (1 thread: 1 CPU shared by 1 of 2 ranks on "
            "this host), 1 decode workers");
  // Unbound: both ranks may use every core, and share them.
  EXPECT_EQ(threads("srun --mpi=pmix -n 2 --cpu-bind=none"),
            "threads per rank: " + std::to_string(cpus / 2) + " to " + std::to_string(cpus / 2) +
                "; rank 0: " + std::to_string(cpus / 2) + " (" + std::to_string(cpus / 2) +
                " thread" + (cpus / 2 == 1 ? "" : "s") + ": " + std::to_string(cpus) +
                " CPUs shared by 2 of 2 ranks on this host), " + std::to_string(cpus / 2) +
                " decode workers");
  // One task with every core.
  EXPECT_EQ(threads("srun --mpi=pmix -n 1 -c " + std::to_string(cpus)),
            "threads per rank: " + std::to_string(cpus) + " to " + std::to_string(cpus) +
                "; rank 0: " + std::to_string(cpus) + " (" + std::to_string(cpus) + " threads: " +
                std::to_string(cpus) + " CPUs shared by 1 of 1 rank on this host), " +
                std::to_string(cpus) + " decode workers");
}

// The generated script, submitted as is: 2 ranks started by srun under
// `clipscale launch`, training then zero-shot evaluation; the same weights as
// plain mpirun.
TEST_F(SlurmTest, AGeneratedScriptTrainsAndEvaluates) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir);
  const std::string script = WriteScript(dir, recipe);
  const std::string text = Bytes(script);
  for (const char* line : {"#SBATCH --nodes=1 ", "#SBATCH --ntasks-per-node=2 ", "#SBATCH --requeue ",
                           "#SBATCH --signal=B:USR1@60 ", "#SBATCH --cpus-per-task=1 "}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << " in\n" << text;
  }
  const std::string job = Submit(script);
  ASSERT_NE(job, "");
  ASSERT_TRUE(WaitFor([&] { return Ended(job); }, 300)) << Log(dir + "/run", job);
  const std::string log = Log(dir + "/run", job);
  EXPECT_EQ(JobField(job, "JobState"), "COMPLETED") << log;
  EXPECT_EQ(JobField(job, "ExitCode"), "0:0") << log;
  EXPECT_NE(log.find("2 rank(s) by srun"), std::string::npos) << log;
  EXPECT_NE(log.find("trained 24 steps"), std::string::npos) << log;
  EXPECT_NE(log.find("zero-shot"), std::string::npos) << log;
  EXPECT_TRUE(Bytes(Reference() + "/model.safetensors") == Bytes(dir + "/run/model.safetensors"))
      << "final weights differ from plain mpirun's\n" << log;
}

// Preemption as Slurm does it: the warning signal to the batch script. The
// ranks save at the next step boundary, the script requeues the job, and the
// requeued job resumes from that checkpoint.
TEST_F(SlurmTest, TheWarningSignalSavesRequeuesAndResumesByteIdentical) {
  const std::string dir = testing::MakeTempDir();
  const std::string run = dir + "/run";
  const std::string script = WriteScript(dir, WriteRecipe(dir));
  // Slow steps (0.3 s each from step 6: the math is untouched) so the signal
  // lands mid-run.
  const std::string job =
      Submit(script, "CLIPSCALE_FAULT_FAIL_AT_STEP=0:6-23:slow:seconds=0.3:attempt=*");
  ASSERT_NE(job, "");
  ASSERT_TRUE(WaitFor([&] { return fs::exists(run + "/checkpoints/step_000000008"); }, 240))
      << Log(run, job);
  ASSERT_EQ(RunCommand("scancel --signal=USR1 --batch " + job).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return JobField(job, "Restarts") == "1"; }, 120)) << Log(run, job);
  // The second run of the script appends to the same log.
  ASSERT_TRUE(WaitFor([&] {
    return JobField(job, "JobState") == "FAILED" ||
           (Count(Log(run, job), "clipscale launch: job ") == 2 && Ended(job));
  }, 300)) << Log(run, job);
  const std::string log = Log(run, job);
  EXPECT_EQ(JobField(job, "JobState"), "COMPLETED") << log;
  EXPECT_NE(log.find("saved on USR1: requeueing"), std::string::npos) << log;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex("stopped by SIGTERM/SIGUSR1 after step (\\d+)")))
      << log;
  const std::string stopped = m[1];
  EXPECT_NE(log.find("resuming at step " + stopped + " from"), std::string::npos) << log;
  EXPECT_NE(log.find("trained 24 steps"), std::string::npos) << log;
  EXPECT_TRUE(Bytes(Reference() + "/model.safetensors") == Bytes(run + "/model.safetensors"))
      << "final weights differ from the undisturbed run's\n" << log;
}

// A rank killed at step 6: `clipscale launch` starts the srun step again
// inside the same allocation, from the checkpoint of step 4; Slurm never
// requeues the job.
TEST_F(SlurmTest, AFailedStepIsRestartedInsideTheAllocation) {
  const std::string dir = testing::MakeTempDir();
  const std::string run = dir + "/run";
  const std::string job = Submit(WriteScript(dir, WriteRecipe(dir)),
                                 "CLIPSCALE_FAULT_FAIL_AT_STEP=1:6:kill");
  ASSERT_NE(job, "");
  ASSERT_TRUE(WaitFor([&] { return Ended(job); }, 300)) << Log(run, job);
  const std::string log = Log(run, job);
  EXPECT_EQ(JobField(job, "JobState"), "COMPLETED") << log;
  EXPECT_EQ(JobField(job, "Restarts"), "0") << log;
  EXPECT_NE(log.find("clipscale launch: attempt 0 failed: rank 1"), std::string::npos) << log;
  EXPECT_EQ(Count(log, "clipscale launch: attempt 1: 2 rank(s), resuming at step 4 from"), 1) << log;
  EXPECT_NE(log.find("resumed at step 4 from"), std::string::npos) << log;
  EXPECT_NE(log.find("trained 24 steps"), std::string::npos) << log;
  EXPECT_TRUE(Bytes(Reference() + "/model.safetensors") == Bytes(run + "/model.safetensors"))
      << "final weights differ from the undisturbed run's\n" << log;
}

// Its own ctest entry, the fixture cleanup of the cases (slurm.cmake): it
// runs even when they crashed or ran out of time, and stops the daemons.
TEST(SlurmCleanup, StopsTheDaemons) {
  const std::string conf = SlurmCluster::Root() + "/slurm.conf";
  if (fs::exists(conf)) {
    ::setenv("SLURM_CONF", conf.c_str(), 1);
    SlurmCluster::Stop();
  }
  for (const char* name : {"slurmd.pid", "slurmctld.pid"}) {
    EXPECT_EQ(SlurmCluster::Running(name), 0) << name << " still runs";
  }
}

}  // namespace
}  // namespace clipscale
