// "A failing rank aborts the whole job": `mpirun -np 3 clipscale train` where
// rank 1 fails as it reaches step 3 (CLIPSCALE_FAULT_FAIL_AT_STEP, see
// train/fault_injection.h) while ranks 0 and 2 go on into step 3's
// collectives, where they would wait forever for rank 1. The job must end
// soon after the failure, non-zero, with messages that name rank 1.
#include "train/fault_injection.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

// The failure is reported within this long, usually within a second: the
// failing rank calls MPI_Abort (or dies of SIGABRT) and mpirun kills the rest.
// Generous for a loaded 2-core machine; a job left hanging would run into the
// `timeout` below instead.
constexpr double kEndWithinSeconds = 15;
constexpr int kHangTimeoutSeconds = 240;

// CLIPSCALE_TEST_BINARY runs another build of clipscale (e.g. a patched one).
std::string Binary() { return testing::ClipscaleBinary(); }

const std::string& DataDir() {
  return testing::SharedSynthData("rank_failure_data", "--train 240 --val 30 --seed 5");
}

struct JobRun {
  int exit_code = -1;
  std::string output;
  std::optional<double> fault_seen_s;  // when the fault's line arrived
  double ended_s = 0;                  // when the job had ended
};

// Runs `command`, noting when the line naming the injected fault arrives.
JobRun RunTimed(const std::string& command) {
  JobRun run;
  const auto start = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return run;
  char line[4096];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    run.output += line;
    if (!run.fault_seen_s && std::string(line).find("injected fault") != std::string::npos) {
      run.fault_seen_s = since();
    }
  }
  const int status = pclose(pipe);
  run.ended_s = since();
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

JobRun TrainWithFault(const std::string& fault) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = dir + "/recipe.yaml";
  // 240 samples, global batch 48 = 3 ranks x 16: 5 steps; rank 0 logs each one.
  std::ofstream(recipe) << "model: tiny\ndata:\n  train: " << DataDir()
                        << "/train\n  batch_size: 48\n  augment: false\n"
                           "schedule:\n  warmup_steps: 1\n"
                           "epochs: 1\nthreads: 1\nlog_every: 1\noutput: "
                        << dir << "/run\n";
  return RunTimed(absl::StrCat(
      "env ", kFaultAtStepVariable, "=", fault, " timeout -k 5 ", kHangTimeoutSeconds, " ",
      testing::Mpirun(3),
      testing::ShellQuote(Binary()), " train --config ", testing::ShellQuote(recipe)));
}

void ExpectWholeJobEndedSoon(const JobRun& run) {
  ASSERT_NE(run.exit_code, 0)
      << "the job succeeded, so no fault was injected: Trainer::Run must call "
         "`RETURN_IF_ERROR(InjectedFault(rank_, step));` at the start of each step "
         "(train/fault_injection.h)\n"
      << run.output;
  ASSERT_NE(run.exit_code, 124) << "the job hung until `timeout` killed it\n" << run.output;
  ASSERT_TRUE(run.fault_seen_s.has_value()) << run.output;
  const double after = run.ended_s - *run.fault_seen_s;
  std::printf("job ended %.2f s after the fault was reported (bound %.0f s), exit %d\n", after,
              kEndWithinSeconds, run.exit_code);
  EXPECT_LE(after, kEndWithinSeconds) << run.output;
  // Ranks 0 and 2 finished steps 0-2 and were inside step 3 when rank 1 failed.
  EXPECT_NE(run.output.find("step 3/5"), std::string::npos) << run.output;
  EXPECT_EQ(run.output.find("step 4/5"), std::string::npos) << run.output;
}

TEST(RankFailure, AnErrorOnOneRankEndsTheJobNamingTheRank) {
  const JobRun run = TrainWithFault("1:3");
  ExpectWholeJobEndedSoon(run);
  EXPECT_NE(run.output.find("clipscale: error on rank 1: injected fault "
                            "(CLIPSCALE_FAULT_FAIL_AT_STEP) at step 3 on rank 1"),
            std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("clipscale: rank 1 of 3 failed (exit 1): ending the whole job"),
            std::string::npos)
      << run.output;
}

TEST(RankFailure, ACrashOnOneRankEndsTheJobNamingTheRank) {
  const JobRun run = TrainWithFault("2:3:abort");
  ExpectWholeJobEndedSoon(run);
  // The CHECK's own message carries the real rank (not "rank 0" everywhere).
  EXPECT_NE(run.output.find("clipscale: FATAL [rank 2] "), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("injected fault (CLIPSCALE_FAULT_FAIL_AT_STEP) at step 3 on rank 2"),
            std::string::npos)
      << run.output;
  EXPECT_EQ(run.output.find("FATAL [rank 0]"), std::string::npos) << run.output;
}

TEST(FaultPlan, ParsesRankStepAndMode) {
  auto plans = ParseFaultPlans("1:3");
  ASSERT_TRUE(plans.ok() && plans->size() == 1) << plans.status();
  const FaultPlan& plan = plans->front();
  EXPECT_EQ(plan.rank, 1);
  EXPECT_EQ(plan.first_step, 3);
  EXPECT_EQ(plan.last_step, 3);
  EXPECT_EQ(plan.action, FaultPlan::Action::kError);
  EXPECT_EQ(plan.phase, Phase::kData);
  EXPECT_EQ(plan.attempt, 0);
  auto action = [](const char* text) { return ParseFaultPlans(text).value().front().action; };
  EXPECT_EQ(action("0:12:abort"), FaultPlan::Action::kAbort);
  EXPECT_EQ(action("2:5:sigterm"), FaultPlan::Action::kSigterm);
  EXPECT_EQ(action("0:1:kill"), FaultPlan::Action::kKill);
  EXPECT_EQ(action("0:1:hang"), FaultPlan::Action::kHang);
  EXPECT_EQ(action("0:1:nan"), FaultPlan::Action::kNan);
  EXPECT_TRUE(ParseFaultPlans("")->empty());
  plans = ParseFaultPlans("2:4-6:slow:phase=all-reduce:attempt=*:seconds=1.5; 0:9:exit:attempt=2");
  ASSERT_TRUE(plans.ok() && plans->size() == 2) << plans.status();
  EXPECT_EQ((*plans)[0].first_step, 4);
  EXPECT_EQ((*plans)[0].last_step, 6);
  EXPECT_EQ((*plans)[0].phase, Phase::kAllReduce);
  EXPECT_EQ((*plans)[0].attempt, -1);
  EXPECT_DOUBLE_EQ((*plans)[0].seconds, 1.5);
  EXPECT_EQ((*plans)[1].action, FaultPlan::Action::kExit);
  EXPECT_EQ((*plans)[1].attempt, 2);
  for (const char* bad : {"1", "1:", ":3", "-1:3", "1:-3", "1:3:kil", "a:b", "1:3:abort:x",
                          "1:5-3", "1:3:hang:phase=lunch", "1:3:attempt=-1", "0:1;1"}) {
    auto parsed = ParseFaultPlans(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(std::string(parsed.status().message()).find("CLIPSCALE_FAULT_FAIL_AT_STEP"),
              std::string::npos);
  }
}

// Without the variable, InjectedFault never fails (this process has none set).
TEST(FaultPlan, UnsetMeansNoFault) {
  ASSERT_EQ(std::getenv(kFaultAtStepVariable), nullptr);
  for (int64_t step = 0; step < 5; ++step) EXPECT_TRUE(InjectedFault(1, step).ok());
}

}  // namespace
}  // namespace clipscale
