// The fp16 loss scaler follows torch.amp.GradScaler (in the venv) state for
// state: the same scales, growth trackers, skipped steps, unscaled gradients
// and parameters, bit for bit, on a sequence with injected infs and NaNs.
#include "train/grad_scaler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float FromRepr(const std::string& s) {
  if (s == "inf") return std::numeric_limits<float>::infinity();
  if (s == "-inf") return -std::numeric_limits<float>::infinity();
  if (s == "nan") return std::numeric_limits<float>::quiet_NaN();
  return static_cast<float>(std::stod(s));
}

void ExpectSameTrajectory(const GradScalerConfig& config, int steps) {
  auto out = testing::RunPythonScript(
      "grad_scaler_reference.py",
      {std::to_string(config.init_scale), std::to_string(config.growth_factor),
       std::to_string(config.backoff_factor), std::to_string(config.growth_interval),
       std::to_string(steps)});
  ASSERT_TRUE(out.ok()) << out.status();
  const auto reference = nlohmann::json::parse(*out);
  ASSERT_EQ(static_cast<int>(reference.size()), steps);

  ASSERT_TRUE(ValidateGradScaler(config).ok());
  GradScaler scaler(config);
  torch::Tensor p = torch::linspace(-1.0, 1.0, 6).requires_grad_(true);
  const std::map<int, float> bad = {{4, std::numeric_limits<float>::infinity()},
                                    {5, std::numeric_limits<float>::quiet_NaN()},
                                    {9, -std::numeric_limits<float>::infinity()},
                                    {10, std::numeric_limits<float>::infinity()}};
  int skipped = 0, grown = 0;
  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    if (p.grad().defined()) p.mutable_grad().zero_();
    torch::Tensor w = torch::arange(6, torch::kFloat32) * 0.37 - step * 0.11;
    scaler.Scale((p * p * w).sum()).backward();
    if (bad.count(step)) {
      torch::NoGradGuard no_grad;
      p.mutable_grad()[step % 6] = bad.at(step);
    }
    const float before = scaler.scale();
    const bool found_inf = scaler.UnscaleAndCheck({p});
    EXPECT_EQ(found_inf, bad.count(step) == 1);
    const auto& r = reference[step];
    torch::Tensor g = p.grad().contiguous();
    for (int i = 0; i < 6; ++i) {
      const float want = FromRepr(r["grad"][i].get<std::string>()), got = g[i].item<float>();
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got)) << i;
      } else {
        EXPECT_EQ(Bits(got), Bits(want)) << i << ": " << got << " vs " << want;
      }
    }
    if (!found_inf) {
      torch::NoGradGuard no_grad;
      p.add_(p.grad(), -0.1);  // torch.optim.SGD(lr=0.1), single-tensor path
    }
    scaler.Update(found_inf);
    skipped += found_inf;
    grown += scaler.scale() > before;
    EXPECT_EQ(Bits(scaler.scale()), Bits(r["scale"].get<float>()))
        << scaler.scale() << " vs " << r["scale"].get<double>();
    EXPECT_EQ(scaler.state().growth_tracker, r["tracker"].get<int>());
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(Bits(p[i].item<float>()), Bits(r["param"][i].get<float>())) << i;
    }
  }
  EXPECT_EQ(skipped, static_cast<int>(bad.size()));
  EXPECT_GT(grown, 0);  // the sequence exercises growth, not only backoff
}

TEST(GradScalerTest, TrajectoryEqualsTorchGradScaler) {
  GradScalerConfig c;
  c.init_scale = 1024;
  c.growth_interval = 3;
  ExpectSameTrajectory(c, 16);
}

// Factors that are not powers of two: the float32 rounding of scale * factor
// must be torch's too.
TEST(GradScalerTest, TrajectoryWithUnevenFactorsEqualsTorch) {
  GradScalerConfig c;
  c.init_scale = 3.0e4;
  c.growth_factor = 1.7;
  c.backoff_factor = 0.3;
  c.growth_interval = 2;
  ExpectSameTrajectory(c, 16);
}

TEST(GradScalerTest, GrowthStopsBeforeFloatOverflow) {
  GradScalerConfig c;
  c.init_scale = 3.0e38;
  c.growth_interval = 1;
  GradScaler scaler(c);
  scaler.Update(false);
  EXPECT_EQ(scaler.scale(), 3.0e38f);  // 6e38 is not a float32: kept
  EXPECT_EQ(scaler.state().growth_tracker, 0);
}

TEST(GradScalerTest, StateRestoresBitForBit) {
  GradScalerConfig c;
  c.growth_interval = 4;
  c.backoff_factor = 0.3;
  GradScaler a(c);
  for (bool inf : {false, true, false, false}) a.Update(inf);
  GradScaler b(c);
  b.Restore(a.state());
  for (bool inf : {false, false, true, false, false, false, false}) {
    a.Update(inf);
    b.Update(inf);
    EXPECT_EQ(Bits(a.scale()), Bits(b.scale()));
    EXPECT_EQ(a.state().growth_tracker, b.state().growth_tracker);
  }
}

TEST(GradScalerTest, ConfigIsChecked) {
  GradScalerConfig c;
  EXPECT_TRUE(ValidateGradScaler(c).ok());
  using Change = void (*)(GradScalerConfig&);
  for (Change bad : std::initializer_list<Change>{[](GradScalerConfig& x) { x.init_scale = 0; },
                   [](GradScalerConfig& x) { x.init_scale = 1e39; },
                   [](GradScalerConfig& x) { x.growth_factor = 1.0; },
                   [](GradScalerConfig& x) { x.backoff_factor = 1.0; },
                   [](GradScalerConfig& x) { x.backoff_factor = 0.0; },
                   [](GradScalerConfig& x) { x.growth_interval = 0; }}) {
    GradScalerConfig x;
    bad(x);
    EXPECT_FALSE(ValidateGradScaler(x).ok());
  }
}

}  // namespace
}  // namespace clipscale
