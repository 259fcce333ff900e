// A short training run on the synthetic demo data: the loss falls, zero-shot
// accuracy beats chance, and the run leaves its config, metrics and weights.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/file_util.h"
#include "data/synth.h"
#include "models/clip_model.h"
#include "models/weights_io.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

TrainConfig ShortRun(const std::string& dir) {
  SynthOptions synth;
  synth.out = dir + "/data";
  synth.train = 1536;
  synth.val = 300;
  synth.per_shard = 500;
  synth.seed = 11;
  EXPECT_TRUE(WriteSynthDataset(synth).ok());
  TrainConfig config;
  config.model = "tiny";
  config.model_config = *LoadModelConfig("tiny");
  config.data.train = synth.out + "/train";
  config.data.val = synth.out + "/val";
  config.data.batch_size = 64;
  config.epochs = 4;  // 96 steps
  config.schedule.lr = 1e-3;
  config.schedule.warmup_steps = 10;
  config.optimizer.weight_decay = 0.1;
  config.optimizer.grad_clip_norm = 1.0;
  config.eval.templates = {"a photo of a {}.", "a {}."};
  config.output = dir + "/run";
  config.log_every = 16;
  return config;
}

TEST(TrainTest, LossFallsAndZeroShotBeatsChance) {
  const std::string dir = testing::MakeTempDir();
  TrainConfig config = ShortRun(dir);
  auto result = Train(config);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps, 96);
  // ln(64) = 4.16 is the loss of an untrained model; learning must cut the
  // mean of the last 16 steps well below the first 16.
  EXPECT_LT(result->last_loss, 0.75 * result->first_loss)
      << result->first_loss << " -> " << result->last_loss;
  // 30 classes: chance is 3.3% top-1. After 96 steps the colour is learnt and
  // the shape partly; we demand 3x chance (measured 23.7%, 7x chance, on
  // 2026-11-29; the run is deterministic on a given machine and thread count).
  const double top1 = result->eval.at("zeroshot_top1");
  std::printf("zero-shot top-1 %.3f (chance %.3f), R@1 i2t %.3f\n", top1,
              result->eval.at("zeroshot_chance_top1"), result->eval.at("image_to_text_R@1"));
  EXPECT_GT(top1, 3.0 * result->eval.at("zeroshot_chance_top1"));
  EXPECT_GT(result->eval.at("image_to_text_R@10"), 5 * 10.0 / 300);

  // The run's outputs: effective config, metrics, TensorBoard file, weights.
  EXPECT_TRUE(std::filesystem::exists(config.output + "/config.yaml"));
  EXPECT_TRUE(std::filesystem::exists(config.output + "/model.yaml"));
  auto jsonl = ReadFile(config.output + "/metrics.jsonl");
  ASSERT_TRUE(jsonl.ok());
  int loss_lines = 0;
  std::istringstream lines(*jsonl);
  for (std::string line; std::getline(lines, line);) {
    auto json = nlohmann::json::parse(line);
    if (json.contains("train/loss")) ++loss_lines;
  }
  EXPECT_EQ(loss_lines, 96);
  bool has_events = false;
  for (const auto& entry : std::filesystem::directory_iterator(config.output)) {
    has_events |= entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  EXPECT_TRUE(has_events);
  ClipModel reloaded(config.model_config);
  EXPECT_TRUE(LoadWeights(*reloaded, result->weights_path).ok());
  EXPECT_LE(reloaded->logit_scale().item<double>(), std::log(100.0) + 1e-6);
}

TEST(TrainTest, ImpossibleConfigsFailBeforeTraining) {
  const std::string dir = testing::MakeTempDir();
  TrainConfig config = ShortRun(dir);
  config.data.batch_size = 5000;
  auto result = Train(config);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(std::string(result.status().message()).find("data.batch_size"), std::string::npos)
      << result.status();
  EXPECT_FALSE(std::filesystem::exists(config.output + "/metrics.jsonl"));

  std::ofstream(dir + "/bad.yaml") << "model: tiny\nmodel_overrides: [vision.patch_size=7]\n"
                                      "data:\n  train: x\n";
  auto bad = LoadTrainConfig(dir + "/bad.yaml", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("not divisible by patch_size"),
            std::string::npos)
      << bad.status();
  std::ofstream(dir + "/typo.yaml") << "model: tiny\ndata:\n  train: x\n  bach_size: 3\n";
  auto typo = LoadTrainConfig(dir + "/typo.yaml", {});
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(std::string(typo.status().message()).find("typo.yaml:4:3: unknown key 'data.bach_size'"),
            std::string::npos)
      << typo.status();
}

}  // namespace
}  // namespace clipscale
