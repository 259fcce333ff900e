// A short training run on the synthetic demo data: the loss falls, zero-shot
// accuracy beats chance, and the run leaves its config, metrics and weights.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

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

// The fp32 ShortRun, trained once for the tests that look at it or compare
// another precision with it.
struct Fp32Run {
  TrainConfig config;
  absl::StatusOr<TrainResult> result;
};
const Fp32Run& TheFp32Run() {
  static const Fp32Run* run = [] {
    auto* r = new Fp32Run;
    r->config = ShortRun(testing::MakeTempDir());
    r->result = Train(r->config);
    return r;
  }();
  return *run;
}

// Step -> value of `metric` in a run's metrics.jsonl.
std::map<int64_t, double> Metric(const std::string& run, const std::string& metric) {
  std::map<int64_t, double> values;
  auto jsonl = ReadFile(run + "/metrics.jsonl");
  EXPECT_TRUE(jsonl.ok()) << jsonl.status();
  if (!jsonl.ok()) return values;
  std::istringstream lines(*jsonl);
  for (std::string line; std::getline(lines, line);) {
    auto json = nlohmann::json::parse(line);
    if (json.contains(metric)) values[json["step"]] = json[metric].get<double>();
  }
  return values;
}

TEST(TrainTest, LossFallsAndZeroShotBeatsChance) {
  const TrainConfig& config = TheFp32Run().config;
  const absl::StatusOr<TrainResult>& result = TheFp32Run().result;
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

// amp_bf16 (autocast of the towers, bf16 embeddings into the fp32-accumulated
// loss) must learn as fp32 does, on the same data, seed and schedule. The two
// runs agree for the first few steps and then drift apart as any two seeds
// would (bf16 rounds each matmul input to 2^-8), so the bounds are those of
// seed-to-seed variation, measured with fp32 and amp_bf16 at seeds 0, 1, 2 on
// 2026-12-03: last-window loss 1.09/1.09/1.18 (fp32) and 1.09/1.05/1.17
// (bf16), a spread of 8 %; zero-shot top-1 25.0/18.3/20.7 % and 20.0/18.0/
// 18.3 %, a spread of 7 points. Allowed: the loss within 15 % of fp32's and
// top-1 at most 14 points below it (about twice those spreads), and the
// 3x-chance floor of the fp32 test. A
// broken autocast path (no gradient through the cast, logits in bf16 that
// saturate the softmax) leaves the loss near ln(64) = 4.16 and fails both.
TEST(TrainTest, AmpBf16LearnsAsFp32Does) {
  const absl::StatusOr<TrainResult>& fp32 = TheFp32Run().result;
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  TrainConfig config = ShortRun(testing::MakeTempDir());
  config.precision = "amp_bf16";
  auto bf16 = Train(config);
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  const double top1 = bf16->eval.at("zeroshot_top1"), fp32_top1 = fp32->eval.at("zeroshot_top1");
  std::printf("last-window loss: fp32 %.4f, amp_bf16 %.4f; zero-shot top-1: fp32 %.3f, "
              "amp_bf16 %.3f\n",
              fp32->last_loss, bf16->last_loss, fp32_top1, top1);
  EXPECT_EQ(bf16->skipped_steps, 0);
  EXPECT_LT(std::abs(bf16->last_loss - fp32->last_loss), 0.15 * fp32->last_loss);
  EXPECT_GT(top1, fp32_top1 - 0.14);
  EXPECT_GT(top1, 3.0 * bf16->eval.at("zeroshot_chance_top1"));
}

// amp_fp16's loss scaler in a real run: a start scale of 2^28 overflows fp16
// (the embeddings' gradients reach ~2^28 / 64), backs off by 2^-6 per overflow
// and grows x2 after every 2 clean steps, so the scale both falls and rises
// (seen: overflows at steps 0, 1 and 9, at 2^28, 2^22 and 2^19) within 16
// steps. A run resumed from the checkpoint at step 8 must continue
// the scale, the overflow count and the losses of the uninterrupted run to the
// bit, and end with the same weights byte for byte: the scaler's state is in
// the checkpoint (a fresh scaler would restart at 2^28 and overflow again).
TEST(TrainTest, Fp16LossScaleIsCheckpointedAndResumedBitwise) {
  const std::string dir = testing::MakeTempDir();
  TrainConfig config = ShortRun(dir);
  config.precision = "amp_fp16";
  config.max_steps = 16;
  config.log_every = 4;
  config.eval.every_steps = 0;
  config.data.val = "";
  config.grad_scaler.init_scale = std::ldexp(1.0, 28);
  config.grad_scaler.backoff_factor = 1.0 / 64;
  config.grad_scaler.growth_interval = 2;
  config.checkpoint.every_steps = 8;
  config.checkpoint.keep = 0;
  config.checkpoint.async = false;
  auto whole = Train(config);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->steps, 16);
  const auto scale = Metric(config.output, "train/loss_scale");
  const auto overflows = Metric(config.output, "train/scaler_skipped_steps");
  ASSERT_EQ(scale.size(), 16u);
  bool fell = false, rose = false;
  for (auto it = std::next(scale.begin()); it != scale.end(); ++it) {
    fell |= it->second < std::prev(it)->second;
    rose |= it->second > std::prev(it)->second;
  }
  EXPECT_TRUE(fell && rose) << "the scale should both back off and grow in this run";
  ASSERT_FALSE(overflows.empty());
  EXPECT_EQ(whole->skipped_steps, 0) << "scaler overflows are not held against max_skipped_steps";
  EXPECT_LT(whole->last_loss, whole->first_loss);

  TrainConfig resumed = config;
  resumed.output = dir + "/resumed";
  resumed.resume = config.output + "/checkpoints/step_000000008";
  auto rest = Train(resumed);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->start_step, 8);
  const auto rest_scale = Metric(resumed.output, "train/loss_scale");
  const auto losses = Metric(config.output, "train/loss");
  const auto rest_losses = Metric(resumed.output, "train/loss");
  for (int64_t step = 8; step < 16; ++step) {
    ASSERT_EQ(rest_scale.count(step), 1u) << step;
    EXPECT_EQ(rest_scale.at(step), scale.at(step)) << "loss scale at step " << step;
    EXPECT_EQ(rest_losses.at(step), losses.at(step)) << "loss at step " << step;
  }
  const auto rest_overflows = Metric(resumed.output, "train/scaler_skipped_steps");
  if (!rest_overflows.empty()) {
    EXPECT_EQ(rest_overflows.rbegin()->second, overflows.rbegin()->second);
  }
  auto a = ReadFile(whole->weights_path), b = ReadFile(rest->weights_path);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(*a == *b) << "final weights differ from the uninterrupted run's";
}

// pure_bf16: the weights (and so AdamW's state and the all-reduced
// gradients) are bf16, images are fed as bf16; the run must still learn in 16
// steps, and the weights it saves are bf16 (as OpenCLIP's model.to(bfloat16)
// state dict), which an fp32 model loads.
TEST(TrainTest, PureBf16TrainsAndSavesBf16Weights) {
  TrainConfig config = ShortRun(testing::MakeTempDir());
  config.precision = "pure_bf16";
  config.max_steps = 16;
  config.log_every = 4;
  config.eval.every_steps = 0;
  auto result = Train(config);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->skipped_steps, 0);
  EXPECT_LT(result->last_loss, 0.9 * result->first_loss)
      << result->first_loss << " -> " << result->last_loss;
  EXPECT_GT(result->eval.at("zeroshot_top1"), 0.0);
  auto bytes = ReadFile(result->weights_path);
  ASSERT_TRUE(bytes.ok());
  EXPECT_NE(bytes->find("\"dtype\":\"BF16\""), std::string::npos);
  EXPECT_EQ(bytes->find("\"dtype\":\"F32\""), std::string::npos);
  ClipModel reloaded(config.model_config);
  EXPECT_TRUE(LoadWeights(*reloaded, result->weights_path).ok());
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
