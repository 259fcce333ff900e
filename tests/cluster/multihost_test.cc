// clipscale across real network hosts, made on this machine: each host is a
// network namespace with its own address and (through `unshare --uts`) its
// own host name, joined to the others by a bridge. mpirun reaches them
// through an rsh agent the way it would through ssh, and every byte between
// the hosts crosses a real (virtual) link that the test can cut.
// What is promised: 2 hosts x 2 ranks train exactly as 4 ranks on one host
// (same losses, same final weights, byte for byte); `clipscale launch`
// notices a host that drops off the network, names it, and restarts the job
// from its last committed checkpoint once it is back, to the same weights; a
// host that cannot be reached at all ends the launch with a message naming it.
// Needs root (ip netns); it fails, not skips, without it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::ShellQuote;
using Clock = std::chrono::steady_clock;

// The test hosts. hosta and hostb are on the bridge; hostc's link stays down
// (a host that cannot be reached). The names are this test's own, so leftovers
// of an earlier run that crashed can be found and removed.
struct Host {
  const char* name;
  const char* netns;
  const char* veth;  // the bridge side of its link
  const char* address;
  bool linked;
};
constexpr Host kHosts[] = {{"hosta", "csA", "csvA", "10.77.0.1", true},
                           {"hostb", "csB", "csvB", "10.77.0.2", true},
                           {"hostc", "csC", "csvC", "10.77.0.3", false}};
constexpr char kBridge[] = "csbr0";
constexpr char kSubnet[] = "10.77.0.0/24";

std::string Binary() { return testing::ClipscaleBinary(); }

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The whole command line's stderr is captured, not its last command's only.
CommandResult Sh(const std::string& command) { return testing::RunCommand("(" + command + "\n)"); }

// Ends whatever still runs in the test's namespaces (the test started all of
// it), removes the namespaces, their links and the bridge. Quiet when absent.
void RemoveHosts() {
  std::string script;
  for (const Host& h : kHosts) {
    absl::StrAppend(&script, "ip netns pids ", h.netns, " 2>/dev/null | xargs -r kill -9; ");
    absl::StrAppend(&script, "ip netns del ", h.netns, " 2>/dev/null; ");
    absl::StrAppend(&script, "ip link del ", h.veth, " 2>/dev/null; ");
  }
  Sh(absl::StrCat(script, "ip link del ", kBridge, " 2>/dev/null; true"));
}

// The bridge (10.77.0.254/24) and one namespace per host, joined by a veth
// pair whose inside end is the host's eth0. Returns "" or what failed.
std::string MakeHosts() {
  if (::geteuid() != 0) return "needs root for ip netns (the machine and CI run as root)";
  std::string script = absl::StrCat("set -ex; ip link add ", kBridge, " type bridge; ",
                                    "ip addr add 10.77.0.254/24 dev ", kBridge, "; ",
                                    "ip link set ", kBridge, " up; ");
  for (const Host& h : kHosts) {
    const std::string in = absl::StrCat("ip netns exec ", h.netns, " ");
    const std::string peer = absl::StrCat(h.veth, "p");
    absl::StrAppend(&script, "ip netns add ", h.netns, "; ", "ip link add ", h.veth,
                    " type veth peer name ", peer, "; ", "ip link set ", h.veth, " master ",
                    kBridge, "; ", "ip link set ", peer, " netns ", h.netns, "; ");
    absl::StrAppend(&script, in, "ip link set ", peer, " name eth0; ", in, "ip addr add ",
                    h.address, "/24 dev eth0; ", in, "ip link set eth0 up; ", in,
                    "ip link set lo up; ");
    if (h.linked) absl::StrAppend(&script, "ip link set ", h.veth, " up; ");
  }
  const CommandResult r = Sh(script);
  return r.exit_code == 0 ? "" : "setting up the test hosts failed:\n" + r.output;
}

// Runs `command` on hosta: in its namespace, under its host name (mpirun and
// the launch run there; ranks on hosta are its children).
std::string OnHostA(const std::string& command) {
  return "ip netns exec csA unshare --uts sh -c " + ShellQuote("hostname hosta && exec " + command);
}

// mpirun's "ssh" to a test host: run the command line (a shell line, as ssh
// passes it: mpirun may start it with PATH=...) in that host's namespace,
// under its own host name.
std::string WriteAgent(const std::string& dir) {
  const std::string path = dir + "/agent";
  std::ofstream out(path);
  out << "#!/bin/sh\nhost=$1; shift\ncase \"$host\" in\n";
  for (const Host& h : kHosts) out << "  " << h.name << ") ns=" << h.netns << " ;;\n";
  out << "  *) echo \"agent: no test host $host\" >&2; exit 255 ;;\nesac\n"
         "exec ip netns exec \"$ns\" unshare --uts sh -c \"hostname $host && $*\"\n";
  out.close();
  fs::permissions(path, fs::perms::owner_all);
  return path;
}

std::string WriteHostfile(const std::string& dir, const std::vector<std::string>& hosts,
                          int slots) {
  const std::string path = dir + "/hostfile";
  std::ofstream out(path);
  for (const std::string& h : hosts) out << h << " slots=" << slots << "\n";
  return path;
}

// What mpirun needs to start and connect ranks on the test hosts: the agent,
// TCP on the test subnet only, no binding (all hosts share 2 cores).
std::vector<std::string> MpirunNetworkArgs(const std::string& agent) {
  const std::pair<std::string, std::string> mca[] = {{"plm_rsh_agent", agent},
                                                     {"btl", "tcp,self"},
                                                     {"btl_tcp_if_include", kSubnet},
                                                     {"oob_tcp_if_include", kSubnet}};
  std::vector<std::string> args;
  for (const auto& [key, value] : mca) args.insert(args.end(), {"--mca", key, value});
  args.insert(args.end(), {"--bind-to", "none"});
  return args;
}

std::string Join(const std::vector<std::string>& words, const std::string& prefix = "") {
  std::string out;
  for (const std::string& w : words) out += prefix + ShellQuote(w) + " ";
  return out;
}

const std::string& DataDir() {
  return testing::SharedSynthData("multihost_data", "--train 384 --val 40 --seed 5");
}

// launch_test's small CLIP: 24 steps of 32, checkpoints every 4. Heartbeats
// every 0.5 s, a rank dead after 6 missed (3 s); the hang bound is far above
// that, so a cut-off host is found by its silence, not as a hang.
std::string WriteRecipe(const std::string& dir) {
  const std::string path = dir + "/recipe.yaml";
  std::ofstream(path)
      << testing::kTinyModelYaml << "data:\n  train: "
      << DataDir()
      << "/train\n  batch_size: 32\n"
         "schedule:\n  lr: 1.0e-3\n  warmup_steps: 4\n"
         "epochs: 2\nthreads: 1\nlog_every: 4\n"
         "checkpoint:\n  every_steps: 4\n"
         "launch:\n  heartbeat_s: 0.5\n  heartbeat_misses: 6\n  hang_min_s: 60\n"
         "  backoff_s: 2\n  startup_timeout_s: 60\n  orphan_s: 10\n";
  return path;
}

std::string Train(const std::string& recipe, const std::string& output) {
  return ShellQuote(Binary()) + " train --config " + ShellQuote(recipe) +
         " --set output=" + ShellQuote(output);
}

// The undisturbed run on one host: plain mpirun, no namespaces, no coordinator.
// Its output folder; the log is beside it, in <folder>.log.
const std::string& Reference(int np) {
  static std::map<int, std::string> runs;
  if (!runs.count(np)) {
    const std::string dir =
        testing::BinaryDir() + "/test_tmp/multihost_reference_" + std::to_string(np);
    fs::remove_all(dir);
    fs::create_directories(dir);
    const CommandResult r =
        Sh("timeout -k 5 240 " + testing::Mpirun(np) + Train(WriteRecipe(dir), dir + "/run"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(dir + "/run.log") << r.output;
    runs[np] = dir + "/run";
  }
  return runs[np];
}

std::string Bytes(const std::string& path) {
  auto bytes = ReadFile(path);
  return bytes.ok() ? *bytes : "(missing " + path + ")";
}

// Step -> train/loss from metrics.jsonl; a step replayed after a restart
// keeps its last value (which must be the same anyway).
std::map<int64_t, double> Losses(const std::string& run) {
  std::map<int64_t, double> losses;
  std::istringstream lines(Bytes(run + "/metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const auto json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (json.is_object() && json.contains("train/loss")) {
      losses[json["step"].get<int64_t>()] = json["train/loss"].get<double>();
    }
  }
  return losses;
}

// Rank 0's "step N/T loss X" log lines (the mean over log_every steps), as
// printed: every occurrence, a replayed window's too.
std::multimap<int, std::string> LoggedLosses(const std::string& log) {
  std::multimap<int, std::string> out;
  static const std::regex line(R"(step (\d+)/\d+ loss (\S+))");
  for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
    out.emplace(std::stoi((*it)[1]), (*it)[2]);
  }
  return out;
}

// Same losses (exactly: the same operations in the same order, only the
// transport differs) and the same final weights, byte for byte.
void ExpectSameRun(const std::string& reference, const std::string& run,
                   const std::string& run_log) {
  const auto want = Losses(reference), got = Losses(run);
  ASSERT_EQ(want.size(), 24u);
  EXPECT_EQ(got, want);
  const auto want_logged = LoggedLosses(Bytes(reference + ".log"));
  const auto got_logged = LoggedLosses(run_log);
  ASSERT_EQ(want_logged.size(), 6u);
  for (const auto& [step, loss] : got_logged) {
    ASSERT_EQ(want_logged.count(step), 1u) << "step " << step;
    EXPECT_EQ(loss, want_logged.find(step)->second) << "logged loss of step " << step;
  }
  for (const auto& [step, loss] : want_logged) EXPECT_GE(got_logged.count(step), 1u) << step;
  EXPECT_TRUE(Bytes(reference + "/model.safetensors") == Bytes(run + "/model.safetensors"))
      << "final weights differ from the one-host run's";
}

bool WaitFor(const std::function<bool()>& done, double seconds) {
  const auto start = Clock::now();
  while (!done()) {
    if (Since(start) > seconds) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

// A command left running in the background; its output and exit status go to files.
struct Background {
  std::string log, rc;
  bool Ended() const { return fs::exists(rc); }
  std::string Output() const { return Bytes(log); }
  int ExitCode() const { return Ended() ? std::stoi(Bytes(rc)) : -1; }
};

Background Start(const std::string& command, const std::string& dir) {
  Background job{dir + "/launch.log", dir + "/launch.rc"};
  Sh("(" + command + " >" + ShellQuote(job.log) + " 2>&1; echo $? >" + ShellQuote(job.rc + ".tmp") +
     "; mv " + ShellQuote(job.rc + ".tmp") + " " + ShellQuote(job.rc) +
     ") </dev/null >/dev/null 2>&1 &");
  return job;
}

class Multihost : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RemoveHosts();  // what a crashed earlier run left
    *setup_error_ = MakeHosts();
    const std::string dir = testing::BinaryDir() + "/test_tmp/multihost_hosts";
    fs::remove_all(dir);
    fs::create_directories(dir);
    agent_ = new std::string(WriteAgent(dir));
  }
  static void TearDownTestSuite() { RemoveHosts(); }

  void SetUp() override { ASSERT_EQ(*setup_error_, "") << *setup_error_; }
  // Whatever a failed case left: its processes end, the links are as set up.
  void TearDown() override {
    std::string script;
    for (const Host& h : kHosts) {
      script += std::string("ip netns pids ") + h.netns + " | xargs -r kill -9; ip link set " +
                h.veth + (h.linked ? " up; " : " down; ");
    }
    Sh(script);
  }

  static std::string Agent() { return *agent_; }

  static inline std::string* setup_error_ = new std::string;
  static inline std::string* agent_ = nullptr;
};

// Processes still running in the test's namespaces.
std::string Leftovers() {
  std::string out;
  for (const Host& h : kHosts) {
    const CommandResult r =
        Sh(std::string("ip netns pids ") + h.netns + " | xargs -r -n1 ps -o pid=,args= -p");
    if (!r.output.empty()) out += std::string(h.name) + ":\n" + r.output;
  }
  return out;
}

// 2 hosts x 2 ranks under one plain mpirun, ranks talking TCP across the
// bridge: the same per-step losses and final weights as 4 ranks on one host.
TEST_F(Multihost, TwoHostsTrainExactlyLikeOneHost) {
  const std::string dir = testing::MakeTempDir();
  const std::string hostfile = WriteHostfile(dir, {"hosta", "hostb"}, 2);
  const std::string mpirun = "timeout -k 5 240 " + testing::Mpirun(4) + "--hostfile " +
                             ShellQuote(hostfile) + " " + Join(MpirunNetworkArgs(Agent()));

  // Where the ranks of that mpirun line run: host name and network namespace.
  const CommandResult probe =
      Sh(OnHostA(mpirun +
                 "sh -c 'echo \"probe rank $OMPI_COMM_WORLD_RANK on $(hostname) in $(readlink "
                 "/proc/self/ns/net)\"'"));
  ASSERT_EQ(probe.exit_code, 0) << probe.output;
  const std::string netns_b = Sh("ip netns exec csB readlink /proc/self/ns/net").output;
  const std::string netns_root = Sh("readlink /proc/self/ns/net").output;
  std::map<int, std::pair<std::string, std::string>> where;
  static const std::regex probe_line(R"(probe rank (\d) on (\S+) in (\S+))");
  for (std::sregex_iterator it(probe.output.begin(), probe.output.end(), probe_line), end;
       it != end; ++it) {
    where[std::stoi((*it)[1])] = {(*it)[2], (*it)[3]};
  }
  ASSERT_EQ(where.size(), 4u) << probe.output;
  for (int rank : {0, 1}) EXPECT_EQ(where[rank].first, "hosta") << probe.output;
  for (int rank : {2, 3}) {
    EXPECT_EQ(where[rank].first, "hostb") << probe.output;
    EXPECT_EQ(where[rank].second + "\n", netns_b) << probe.output;
  }
  EXPECT_NE(where[0].second, where[2].second) << probe.output;
  EXPECT_NE(where[0].second + "\n", netns_root) << probe.output;

  const auto start = Clock::now();
  const CommandResult run =
      Sh(OnHostA(mpirun + "--display-map " + Train(WriteRecipe(dir), dir + "/run")));
  const double seconds = Since(start);
  std::ofstream(dir + "/train.log") << run.output;
  ASSERT_EQ(run.exit_code, 0) << run.output;
  // mpirun's map of the job itself, and rank 0 sharing its host with one rank.
  for (const char* host : {"hosta", "hostb"}) {
    EXPECT_TRUE(std::regex_search(run.output,
                                  std::regex(std::string("Data for node: ") + host +
                                             R"(\s+Num slots: 2\s+Max slots: \d+\s+Num procs: 2)")))
        << run.output;
  }
  EXPECT_NE(run.output.find("4 rank(s) x 8"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find(" of 2 ranks on this host"), std::string::npos) << run.output;
  ExpectSameRun(Reference(4), dir + "/run", run.output);
  std::printf("2 hosts x 2 ranks: %.1f s, same losses and weights as 4 ranks on one host\n",
              seconds);
}

// `clipscale launch --hostfile` on 2 hosts x 2 ranks; hostb's link is cut
// after the checkpoint of step 8 is committed. Its ranks' heartbeats stop
// reaching the coordinator on hosta: after 6 x 0.5 s the launch names the
// rank and host, tears the job down, and (once the test has put the link
// back, within the 2 s backoff) restarts it from its last committed
// checkpoint; it ends with the undisturbed run's weights.
TEST_F(Multihost, ACutOffHostIsDetectedAndTheJobResumesFromItsCheckpoint) {
  const std::string dir = testing::MakeTempDir();
  const std::string out = dir + "/run";
  const std::string hostfile = WriteHostfile(dir, {"hosta", "hostb"}, 2);
  const std::string& reference = Reference(4);
  // Steps of 0.3 s from step 6 on (rank 0 sleeps, the others wait for it)
  // leave time to cut the link mid-run; attempt 0 only.
  const Background job = Start(
      "CLIPSCALE_FAULT_FAIL_AT_STEP='0:6-23:slow:seconds=0.3' " +
          OnHostA("timeout -k 5 240 " + ShellQuote(Binary()) + " launch --np 4 --hostfile " +
                  ShellQuote(hostfile) + " " + Join(MpirunNetworkArgs(Agent()), "--mpirun-arg=") +
                  "-- --config " + ShellQuote(WriteRecipe(dir)) +
                  " --set output=" + ShellQuote(out) + " --set launch.listen=10.77.0.1:0"),
      dir);
  const auto start = Clock::now();
  const bool saved = WaitFor(
      [&] {
        return Bytes(out + "/checkpoints/latest").find("step_000000008") != std::string::npos ||
               job.Ended();
      },
      120);
  ASSERT_TRUE(saved && !job.Ended()) << "no checkpoint of step 8 while the job ran:\n"
                                     << job.Output();
  ASSERT_EQ(Sh("ip link set csvB down").exit_code, 0);
  const auto cut = Clock::now();
  const bool detected = WaitFor(
      [&] {
        return job.Output().find("clipscale launch: attempt 0 failed") != std::string::npos ||
               job.Ended();
      },
      60);
  const double detect_s = Since(cut);
  ASSERT_EQ(Sh("ip link set csvB up").exit_code, 0);
  ASSERT_TRUE(detected) << "the cut was not noticed in 60 s:\n" << job.Output();
  ASSERT_TRUE(WaitFor([&] { return job.Ended(); }, 200)) << job.Output();
  const double total_s = Since(start);
  const std::string log = job.Output();
  ASSERT_EQ(job.ExitCode(), 0) << log;

  // The failure names a rank of hostb and why; 3 s of silence plus a
  // heartbeat period and the supervisor's poll: 5 s leaves room on 2 cores.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      log, m,
      std::regex(R"(attempt 0 failed: rank (\d) on hostb \(last seen in [^)]+ at step \d+\): )"
                 R"([^\n]*no heartbeat for ([\d.]+) s[^\n]*cut off)")))
      << log;
  EXPECT_TRUE(m[1] == "2" || m[1] == "3") << log;
  const std::string failure = m[0];
  EXPECT_LE(detect_s, 5.0) << log;
  // The restart resumed from a committed checkpoint (step 8 or later), not step 0.
  ASSERT_TRUE(std::regex_search(
      log, m,
      std::regex(R"(clipscale launch: attempt 1: 4 rank\(s\), resuming at step (\d+) from )")))
      << log;
  EXPECT_GE(std::stoi(m[1]), 8) << log;
  EXPECT_EQ(std::stoi(m[1]) % 4, 0) << log;
  EXPECT_NE(log.find("clipscale launch: finished after 1 restart(s)"), std::string::npos) << log;
  // The run's status file tells the same story.
  const CommandResult status = Sh(ShellQuote(Binary()) + " status " + ShellQuote(out));
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_TRUE(std::regex_search(status.output, std::regex(R"(  attempt 0: rank [23] on hostb)")))
      << status.output;
  EXPECT_NE(status.output.find("restarts: 1"), std::string::npos) << status.output;
  EXPECT_EQ(Leftovers(), "") << "processes left on the test hosts after the launch ended";
  ExpectSameRun(reference, out, log);
  std::printf("cut-off host noticed %.1f s after the cut (%s); whole launch %.1f s\n", detect_s,
              failure.c_str(), total_s);
}

// A hostfile host whose link is down from the start: its daemon cannot reach
// mpirun on hosta. The launch must end, non-zero and in bounded time, saying
// which host could not be reached.
TEST_F(Multihost, AnUnreachableHostEndsTheLaunchNamingIt) {
  const std::string dir = testing::MakeTempDir();
  const std::string hostfile = WriteHostfile(dir, {"hosta", "hostc"}, 1);
  const auto start = Clock::now();
  const CommandResult run = Sh(OnHostA(
      "timeout -k 5 120 " + ShellQuote(Binary()) + " launch --np 2 --max-restarts 0 --hostfile " +
      ShellQuote(hostfile) + " " + Join(MpirunNetworkArgs(Agent()), "--mpirun-arg=") +
      "-- --config " + ShellQuote(WriteRecipe(dir)) + " --set output=" + ShellQuote(dir + "/run") +
      " --set launch.listen=10.77.0.1:0 --set launch.startup_timeout_s=30"));
  const double seconds = Since(start);
  std::ofstream(dir + "/launch.log") << run.output;
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.exit_code, 124) << "ended by the test's timeout, not by itself:\n" << run.output;
  EXPECT_LT(seconds, 60) << run.output;
  // The launch's own summary names the host (not only mpirun's text).
  EXPECT_TRUE(std::regex_search(
      run.output, std::regex("clipscale launch: attempt 0 failed: rank \\? on hostc [^\n]*"
                             "mpirun's daemon on hostc could not connect back")))
      << run.output;
  EXPECT_NE(run.output.find("clipscale launch: giving up after 1 attempt(s)"), std::string::npos)
      << run.output;
  EXPECT_EQ(Leftovers(), "");
  std::smatch m;
  if (std::regex_search(run.output, m, std::regex("attempt 0 failed: [^\n]*"))) {
    std::printf("unreachable host, after %.1f s: %s\n", seconds, m.str().c_str());
  }
}

// Its own ctest entry, the fixture cleanup of the others (multihost.cmake):
// it runs even when the cases crashed or ran out of time.
TEST(MultihostCleanup, RemovesTheTestHosts) {
  RemoveHosts();
  EXPECT_EQ(Sh("ip netns list | grep -E '^cs[ABC]( |$)'").output, "");
  EXPECT_NE(Sh(std::string("ip link show ") + kBridge).exit_code, 0);
}

}  // namespace
}  // namespace clipscale
