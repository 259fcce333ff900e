// The LR schedules equal OpenCLIP's scheduler functions step by step.
#include "train/schedule.h"

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

std::vector<double> Reference(const std::vector<std::string>& args) {
  auto out = testing::RunPythonScript("schedule_reference.py", args);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? nlohmann::json::parse(*out).get<std::vector<double>>() : std::vector<double>{};
}

void ExpectSame(const ScheduleConfig& c, int64_t steps, const std::vector<double>& reference) {
  ASSERT_EQ(static_cast<int64_t>(reference.size()), steps);
  ASSERT_TRUE(ValidateSchedule(c, steps).ok());
  for (int64_t s = 0; s < steps; ++s) {
    // Same formula in double on both sides; 1e-15 relative covers pow/cos ulps.
    EXPECT_NEAR(LearningRate(c, s, steps), reference[s], 1e-15 * c.lr + 1e-300) << "step " << s;
  }
}

TEST(ScheduleTest, CosineMatchesOpenClip) {
  ScheduleConfig c;
  c.kind = "cosine";
  c.lr = 5e-4;
  c.warmup_steps = 17;
  ExpectSame(c, 200, Reference({"cosine", "5e-4", "17", "200"}));
}

TEST(ScheduleTest, ConstMatchesOpenClip) {
  ScheduleConfig c;
  c.kind = "const";
  c.lr = 1e-3;
  c.warmup_steps = 10;
  ExpectSame(c, 50, Reference({"const", "1e-3", "10", "50"}));
}

TEST(ScheduleTest, ConstCooldownMatchesOpenClip) {
  ScheduleConfig c;
  c.kind = "const-cooldown";
  c.lr = 2e-3;
  c.warmup_steps = 5;
  c.cooldown_steps = 30;
  c.cooldown_power = 1.5;
  c.cooldown_end_lr = 1e-5;
  ExpectSame(c, 100, Reference({"const-cooldown", "2e-3", "5", "100", "30", "1.5", "1e-5"}));
}

TEST(ScheduleTest, WarmupEndsAtBaseAndCosineEndsNearZero) {
  ScheduleConfig c;
  c.lr = 1.0;
  c.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(LearningRate(c, 0, 100), 0.25);
  EXPECT_DOUBLE_EQ(LearningRate(c, 3, 100), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(c, 4, 100), 1.0);
  EXPECT_LT(LearningRate(c, 99, 100), 1e-3);
}

TEST(ScheduleTest, RejectsImpossibleSchedules) {
  ScheduleConfig c;
  c.kind = "linear";
  EXPECT_FALSE(ValidateSchedule(c, 100).ok());
  c.kind = "cosine";
  c.warmup_steps = 100;
  EXPECT_FALSE(ValidateSchedule(c, 100).ok());
  c.kind = "const-cooldown";
  c.warmup_steps = 10;
  c.cooldown_steps = 95;
  EXPECT_FALSE(ValidateSchedule(c, 100).ok());
}

}  // namespace
}  // namespace clipscale
