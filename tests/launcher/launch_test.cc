// `clipscale launch` end to end, as users run it: a real coordinator (gRPC on
// loopback), real mpirun jobs of real ranks on CPU, real kill -9, SIGSTOP,
// hangs, exceptions and NaNs injected into the ranks (train/fault_injection.h).
// The promise under test: the supervised job restarts by itself from its last
// committed checkpoint and ends with the same final weights, byte for byte, as
// a run that was never disturbed (same W); a slot that keeps failing is left
// out and the job ends on fewer ranks with the same global batches; what cannot
// be healed ends cleanly with a summary.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "core/file_util.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::ShellQuote;

std::string Binary() { return testing::ClipscaleBinary(); }

const std::string& DataDir() {
  return testing::SharedSynthData("launch_data", "--train 384 --val 40 --seed 5");
}

// A small CLIP (one block per tower): 24 steps of 32 samples take seconds.
// Patch dropout is on, so the ranks' generators are part of what must resume.
// Heartbeats every 0.5 s, a rank dead after 6 missed (3 s: a loaded CI
// machine may delay a heartbeat thread a little), a hang after 4 s
// without progress, restarts after 0.2 s: the faults below resolve in seconds.
std::string WriteRecipe(const std::string& dir, const std::string& extra = "") {
  const std::string path = dir + "/recipe.yaml";
  std::ofstream(path)
      << testing::kTinyModelYaml << "data:\n  train: "
      << DataDir() << "/train\n  batch_size: 32\n  log_sample_keys: true\n"
         "schedule:\n  lr: 1.0e-3\n  warmup_steps: 4\n"
         "epochs: 2\nthreads: 1\nlog_every: 4\n"
         "checkpoint:\n  every_steps: 4\n"
         "launch:\n  heartbeat_s: 0.5\n  heartbeat_misses: 6\n  hang_min_s: 4\n"
         "  backoff_s: 0.2\n  startup_timeout_s: 120\n"
      << extra;
  return path;
}

struct LaunchRun {
  CommandResult result;
  double seconds = 0;
};

LaunchRun Launch(const std::string& recipe, const std::string& output, int np,
                 const std::string& env = "", const std::string& flags = "",
                 const std::string& train_flags = "") {
  const auto start = std::chrono::steady_clock::now();
  LaunchRun run;
  run.result = testing::RunCommand(
      env + " timeout -k 5 300 " + ShellQuote(Binary()) + " launch --np " + std::to_string(np) +
      " " + flags + " -- --config " + ShellQuote(recipe) + " --set output=" + ShellQuote(output) + " " +
      train_flags);
  run.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

// The undisturbed run, once per world size: plain mpirun, no coordinator.
const std::string& Reference(int np) {
  static std::map<int, std::string> runs;
  if (!runs.count(np)) {
    const std::string dir = testing::BinaryDir() + "/test_tmp/launch_reference_" +
                            std::to_string(np);
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string recipe = WriteRecipe(dir);
    auto r = testing::RunCommand(testing::Mpirun(np) + ShellQuote(Binary()) + " train --config " +
                                 ShellQuote(recipe) + " --set output=" + ShellQuote(dir + "/run"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    runs[np] = dir + "/run";
  }
  return runs[np];
}

std::string Bytes(const std::string& path) {
  auto bytes = ReadFile(path);
  return bytes.ok() ? *bytes : "(missing " + path + ")";
}

void ExpectSameWeights(const std::string& reference, const std::string& run) {
  EXPECT_TRUE(Bytes(reference + "/model.safetensors") == Bytes(run + "/model.safetensors"))
      << "final weights differ from the undisturbed run's";
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The recovery line the supervisor prints, for the test log (and the README).
void PrintRecovery(const std::string& name, const std::string& output) {
  std::smatch m;
  static const std::regex recovered("clipscale launch: recovered: [^\n]*");
  if (std::regex_search(output, m, recovered)) std::printf("[%s] %s\n", name.c_str(), m.str().c_str());
}

// Five kill -9s of a random rank at a random step, one of them of the rank
// that is writing a checkpoint (slowed to 0.4 s per file), mid-write:
// every job restarts by itself and ends byte-identical to the undisturbed run.
TEST(Launch, KillNineOfARandomRankHealsByteIdentical) {
  for (int seed = 0; seed < 5; ++seed) {
    std::mt19937 random(seed);
    int rank = std::uniform_int_distribution<int>(0, 1)(random);
    int step = std::uniform_int_distribution<int>(1, 22)(random);
    std::string env;
    if (seed == 0) {
      // Rank 0 dies with its writer thread in the middle of the save of step
      // 8 (3 files x 0.4 s; the step takes 0.1 s).
      rank = 0;
      step = 9;
      env = "CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS=400 ";
    }
    env += "CLIPSCALE_FAULT_FAIL_AT_STEP=" + std::to_string(rank) + ":";
    env += std::to_string(step) + ":kill";
    SCOPED_TRACE("seed " + std::to_string(seed) + ": " + env);
    const std::string dir = testing::MakeTempDir() + "/seed" + std::to_string(seed);
    fs::create_directories(dir);
    const LaunchRun run = Launch(WriteRecipe(dir), dir + "/run", 2, env);
    ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
    EXPECT_NE(run.result.output.find("clipscale launch: attempt 0 failed: rank " +
                                     std::to_string(rank)),
              std::string::npos)
        << run.result.output;
    // mpirun reports the kill, or the coordinator misses the rank's heartbeats
    // first (when mpirun is slow to notice): either names the rank.
    EXPECT_TRUE(run.result.output.find("killed by signal 9") != std::string::npos ||
                run.result.output.find(": no heartbeat for ") != std::string::npos)
        << run.result.output;
    EXPECT_EQ(Count(run.result.output, "clipscale launch: attempt 1:"), 1) << run.result.output;
    if (seed == 0) {
      // The half-written step 8 never became `latest`: the restart took step 4.
      EXPECT_NE(run.result.output.find("resuming at step 4 from"), std::string::npos)
          << run.result.output;
    }
    PrintRecovery("kill seed " + std::to_string(seed), run.result.output);
    ExpectSameWeights(Reference(2), dir + "/run");
  }
}

// A SIGSTOPped rank sends no heartbeats: dead after 6 x 0.5 s; the whole
// session (the stopped rank too) is killed and the job restarts.
TEST(Launch, AStoppedRankIsDetectedAndTheJobHeals) {
  const std::string dir = testing::MakeTempDir();
  const LaunchRun run = Launch(WriteRecipe(dir), dir + "/run", 2, "CLIPSCALE_FAULT_FAIL_AT_STEP=1:10:stop");
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  EXPECT_NE(run.result.output.find("rank 1 on "), std::string::npos);
  EXPECT_NE(run.result.output.find(": no heartbeat for "), std::string::npos) << run.result.output;
  PrintRecovery("sigstop", run.result.output);
  ExpectSameWeights(Reference(2), dir + "/run");
}

// A rank that hangs (its heartbeats go on) stops the others in the loss's
// all-gather: no rank progresses, and after hang_min_s the coordinator names
// the rank that is behind, and where.
TEST(Launch, AHungRankIsNamedAndTheJobHeals) {
  const std::string dir = testing::MakeTempDir();
  const LaunchRun run = Launch(WriteRecipe(dir), dir + "/run", 2,
                         "CLIPSCALE_FAULT_FAIL_AT_STEP=1:10:hang:phase=forward");
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  EXPECT_NE(run.result.output.find(": no progress in forward for "), std::string::npos)
      << run.result.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(run.result.output, m,
                                std::regex("rank 1 on \\S+: no progress in forward for (\\d+) s "
                                           "at step 10")))
      << run.result.output;
  // Detected within the bound (4 s), plus the supervisor's 0.1 s poll and a
  // heartbeat period of lag: 6 s.
  EXPECT_LE(std::stoi(m[1]), 6);
  PrintRecovery("hang", run.result.output);
  ExpectSameWeights(Reference(2), dir + "/run");
}

// An exception nobody catches ends the rank like a crash: restarted, healed.
TEST(Launch, AnUncaughtExceptionIsHealed) {
  const std::string dir = testing::MakeTempDir();
  const LaunchRun run = Launch(WriteRecipe(dir), dir + "/run", 2,
                         "CLIPSCALE_FAULT_FAIL_AT_STEP=0:13:throw:phase=backward");
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  EXPECT_NE(run.result.output.find("uncaught exception: injected fault"), std::string::npos)
      << run.result.output;
  EXPECT_NE(run.result.output.find("clipscale launch: attempt 0 failed: rank 0"),
            std::string::npos)
      << run.result.output;
  ExpectSameWeights(Reference(2), dir + "/run");
}

// NaN gradients on one rank: every rank skips the same optimizer steps (the
// loss and the all-reduced gradients are global), the run goes on and counts them.
TEST(Launch, NonFiniteStepsAreSkippedAndCounted) {
  const std::string dir = testing::MakeTempDir();
  const LaunchRun run = Launch(WriteRecipe(dir), dir + "/run", 2,
                         "CLIPSCALE_FAULT_FAIL_AT_STEP='1:5-6:nan'");
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  EXPECT_EQ(Count(run.result.output, "the optimizer step is skipped"), 2) << run.result.output;
  EXPECT_NE(run.result.output.find("skipped 2 optimizer step(s)"), std::string::npos);
  EXPECT_EQ(run.result.output.find("clipscale launch: attempt 1"), std::string::npos);
}

// More non-finite steps in a row than max_skipped_steps: a clean stop with
// the reason, and no restart (it would replay the same steps).
TEST(Launch, TooManyNonFiniteStepsStopTheJobWithoutRestarts) {
  const std::string dir = testing::MakeTempDir();
  const LaunchRun run = Launch(WriteRecipe(dir, "max_skipped_steps: 3\n"), dir + "/run", 2,
                         "CLIPSCALE_FAULT_FAIL_AT_STEP='0:5-30:nan:attempt=*'");
  EXPECT_EQ(run.result.exit_code, 1) << run.result.output;
  EXPECT_NE(run.result.output.find("4 steps in a row (5 to 8) had a non-finite loss or gradient"),
            std::string::npos)
      << run.result.output;
  EXPECT_NE(run.result.output.find("a restart would fail the same way"), std::string::npos)
      << run.result.output;
  EXPECT_EQ(run.result.output.find("clipscale launch: attempt 1"), std::string::npos);
}

// A rank that fails at every attempt: max_restarts restarts, then a clean
// exit 1 with every failure in the summary.
TEST(Launch, ExhaustedRestartsEndWithASummary) {
  const std::string dir = testing::MakeTempDir();
  const LaunchRun run = Launch(WriteRecipe(dir, "  exclude_after: 0\n"), dir + "/run", 2,
                         "CLIPSCALE_FAULT_FAIL_AT_STEP='1:6:exit:attempt=*'", "--max-restarts 2");
  EXPECT_EQ(run.result.exit_code, 1) << run.result.output;
  EXPECT_NE(run.result.output.find("giving up after 3 attempt(s) (launch.max_restarts)"),
            std::string::npos)
      << run.result.output;
  for (int attempt = 0; attempt < 3; ++attempt) {
    EXPECT_NE(run.result.output.find("  attempt " + std::to_string(attempt) + ": rank 1"),
              std::string::npos)
        << run.result.output;
  }
  // The status file tells the same story.
  auto status = testing::RunCommand(ShellQuote(Binary()) + " status " + ShellQuote(dir + "/run"));
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find(": failed, attempt 2"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("restarts: 3"), std::string::npos) << status.output;
}

// SIGTERM to the launch (as Slurm sends it before a time limit): the job
// saves and stops with 75; the next launch with --resume latest continues it
// to the same final weights.
TEST(Launch, SigtermToTheLaunchSavesAndARelaunchResumes) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir);
  const std::string out = dir + "/run";
  // Slow steps (0.3 s from step 6 on) leave time to signal mid-run.
  const std::string command =
      "CLIPSCALE_FAULT_FAIL_AT_STEP='0:6-23:slow:seconds=0.3' " + ShellQuote(Binary()) +
      " launch --np 2 -- --config " + ShellQuote(recipe) + " --set output=" + ShellQuote(out);
  const CommandResult stopped = testing::RunCommand(
      "(" + command + " & pid=$!; for i in $(seq 100); do grep -qs step_000000004 " +
      ShellQuote(out + "/checkpoints/latest") + " && break; sleep 0.1; done; kill -TERM $pid; "
      "wait $pid)");
  ASSERT_EQ(stopped.exit_code, 75) << stopped.output;
  EXPECT_NE(stopped.output.find("asking the job to save and stop"), std::string::npos)
      << stopped.output;
  EXPECT_NE(stopped.output.find("stopped after step"), std::string::npos) << stopped.output;
  const LaunchRun resumed = Launch(recipe, out, 2, "", "", "--resume latest");
  ASSERT_EQ(resumed.result.exit_code, 0) << resumed.result.output;
  EXPECT_NE(resumed.result.output.find("resuming at step"), std::string::npos)
      << resumed.result.output;
  ExpectSameWeights(Reference(2), out);
}

// Bad samples are counted per shard by the ranks and listed, worst first, in
// the launch's status: here 6 JPEGs of the second of three shards lose their
// start-of-image marker.
TEST(Launch, BadSamplesAreListedByShardInTheStatus) {
  const std::string dir = testing::MakeTempDir();
  auto made = testing::RunCommand(ShellQuote(Binary()) + " data synth --out " +
                                  ShellQuote(dir + "/data") +
                                  " --train 384 --val 0 --per-shard 128 --seed 5");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  std::vector<std::string> shards;
  for (const auto& entry : fs::directory_iterator(dir + "/data/train")) {
    if (entry.path().extension() == ".tar") shards.push_back(entry.path().string());
  }
  std::sort(shards.begin(), shards.end());
  ASSERT_EQ(shards.size(), 3u);
  {
    std::string bytes = Bytes(shards[1]);
    int spoiled = 0;
    for (size_t at = bytes.find("\xff\xd8\xff"); at != std::string::npos && spoiled < 6;
         at = bytes.find("\xff\xd8\xff", at + 3)) {
      bytes.replace(at, 3, "xyz");
      ++spoiled;
    }
    ASSERT_EQ(spoiled, 6);
    std::ofstream(shards[1], std::ios::binary) << bytes;
  }
  std::string recipe = WriteRecipe(dir);
  {
    std::string text = Bytes(recipe);
    text.replace(text.find(DataDir() + "/train"), (DataDir() + "/train").size(), dir + "/data/train");
    std::ofstream(recipe) << text;
  }
  const LaunchRun run = Launch(recipe, dir + "/run", 2);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  auto status = testing::RunCommand(ShellQuote(Binary()) + " status " + ShellQuote(dir + "/run"));
  ASSERT_EQ(status.exit_code, 0) << status.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(status.output, m, std::regex("bad samples: (\\d+) in (\\S+)")))
      << status.output;
  EXPECT_EQ(m[2].str(), shards[1]) << status.output;
  // 2 epochs over 6 bad samples (and any replacement that drew one of them).
  EXPECT_GE(std::stoi(m[1]), 12) << status.output;
}

// kill -9 of the launch itself: nobody would commit the ranks' checkpoints
// or restart them, so they stop on their own once the coordinator has been
// silent for launch.orphan_s (2 s here).
TEST(Launch, RanksStopWhenTheLaunchIsGone) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "  orphan_s: 2\n");
  const std::string out = dir + "/run";
  const std::string command =
      "CLIPSCALE_FAULT_FAIL_AT_STEP='0:6:hang;1:6:hang' " + ShellQuote(Binary()) +
      " launch --np 2 --mpirun-arg=--output-filename --mpirun-arg=" + ShellQuote(dir + "/logs") +
      " -- --config " + ShellQuote(recipe) + " --set output=" + ShellQuote(out) +
      " --set launch.hang_min_s=600";
  // mpirun's and the ranks' command lines; "[t]" keeps the pattern from
  // matching this shell's own command line, which holds the pattern.
  const std::string ranks = "[t]rain --config " + recipe;
  const auto start = std::chrono::steady_clock::now();
  const CommandResult run = testing::RunCommand(
      "(" + command + " & pid=$!; for i in $(seq 200); do grep -qs step_000000004 " +
      ShellQuote(out + "/checkpoints/latest") + " && break; sleep 0.1; done; kill -KILL $pid; "
      "wait $pid; for i in $(seq 300); do pgrep -f -- " + ShellQuote(ranks) +
      " >/dev/null || exit 0; sleep 0.1; done; echo ranks still running; "
      "pkill -9 -f -- " + ShellQuote(ranks) + "; exit 3)");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(run.exit_code, 0) << run.output;
  // A rank said why (their output went to files: the launch's pipes died with
  // it). The first rank to stop ends the job, so the other may not get to say it.
  std::string logs;
  for (int rank = 0; rank < 2; ++rank) {
    logs += Bytes(dir + "/logs/1/rank." + std::to_string(rank) + "/stderr");
  }
  EXPECT_NE(logs.find("the coordinator has not answered for"), std::string::npos) << logs;
  std::printf("the ranks were gone %.1f s after the launch started (orphan_s 2 s)\n", seconds);
}

// Each step's sample keys over all ranks (a replayed step's keys once; a
// step seen by 4 ranks and later by 2 holds the same global batch).
std::map<int64_t, std::set<std::string>> KeysPerStep(const std::string& output) {
  std::map<int64_t, std::set<std::string>> batches;
  for (int rank = 0; fs::exists(output + "/sample_keys/rank_" + std::to_string(rank) + ".txt");
       ++rank) {
    std::istringstream lines(Bytes(output + "/sample_keys/rank_" + std::to_string(rank) + ".txt"));
    for (std::string line; std::getline(lines, line);) {
      std::istringstream fields(line);
      int64_t epoch = 0, step = 0;
      fields >> epoch >> step;
      for (std::string key; fields >> key;) batches[epoch * 1000 + step].insert(key);
    }
  }
  return batches;
}

// Rank slot 3 of 4 fails at every attempt: after exclude_after (2) failures
// it is left out, and the job finishes on 2 ranks (the largest W <= 3 that
// divides 32) with the same global batch at every step.
TEST(Launch, ASlotThatKeepsFailingIsLeftOutAndTheJobShrinks) {
  const std::string dir = testing::MakeTempDir();
  const LaunchRun run = Launch(WriteRecipe(dir, "  exclude_after: 2\n"), dir + "/run", 4,
                         "CLIPSCALE_FAULT_FAIL_AT_STEP='3:6:exit:attempt=*'");
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  EXPECT_NE(run.result.output.find("rank 3 failed 2 times: leaving it out; the job goes on with "
                                   "2 rank(s) and the same global batch of 32"),
            std::string::npos)
      << run.result.output;
  EXPECT_NE(run.result.output.find("clipscale launch: attempt 2: 2 rank(s), resuming at step 4"),
            std::string::npos)
      << run.result.output;
  const auto want = KeysPerStep(Reference(2));
  const auto got = KeysPerStep(dir + "/run");
  ASSERT_EQ(want.size(), 24u);
  EXPECT_EQ(got, want);
  for (const auto& [step, keys] : got) EXPECT_EQ(keys.size(), 32u) << "step " << step;
}

}  // namespace
}  // namespace clipscale
