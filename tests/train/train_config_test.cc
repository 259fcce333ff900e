// LoadTrainConfig's checks: size keys are range-checked, and every message
// names the key and where its value came from (file:line:col or --set).
#include "train/train_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/test_util.h"

namespace clipscale {
namespace {

using ::testing::HasSubstr;

std::string WriteRecipe(const std::string& body) {
  const std::string path = testing::MakeTempDir() + "/recipe.yaml";
  std::ofstream(path) << "model: tiny\ndata:\n  train: shards\n" << body;
  return path;
}

std::string ErrorOf(const std::string& path, const std::vector<std::string>& overrides = {}) {
  auto config = LoadTrainConfig(path, overrides);
  EXPECT_FALSE(config.ok());
  return config.ok() ? "" : std::string(config.status().message());
}

TEST(TrainConfigTest, IntegersAreDecimal) {
  const std::string path = WriteRecipe("  batch_size: 010\n");
  auto config = LoadTrainConfig(path, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->data.batch_size, 10);
  EXPECT_THAT(ErrorOf(WriteRecipe("  batch_size: 0x10\n")),
              HasSubstr("recipe.yaml:4:15: data.batch_size: expected an integer, got '0x10'"));
}

TEST(TrainConfigTest, SizeKeysAreRangeCheckedNamingKeyAndLine) {
  EXPECT_THAT(ErrorOf(WriteRecipe("distributed:\n  bucket_mb: 0\n")),
              HasSubstr("recipe.yaml:5:14: distributed.bucket_mb: is 0, must be in [1, 1048576]"));
  EXPECT_THAT(ErrorOf(WriteRecipe("distributed:\n  zero: 2\n")),
              HasSubstr("recipe.yaml:5:9: distributed.zero: is 2, must be in [0, 1]"));
  // 2^43 MB would overflow the byte count the trainer forms (bucket_mb << 20).
  EXPECT_THAT(ErrorOf(WriteRecipe("distributed:\n  bucket_mb: 8796093022208\n")),
              HasSubstr("recipe.yaml:5:14: distributed.bucket_mb: is 8796093022208"));
  EXPECT_THAT(ErrorOf(WriteRecipe("distributed: {loss_tile: 100000}\n")),
              HasSubstr("recipe.yaml:4:26: distributed.loss_tile: is 100000, must be in"));
  EXPECT_THAT(ErrorOf(WriteRecipe("  batch_size: 1\n")),
              HasSubstr("recipe.yaml:4:15: data.batch_size: is 1, must be in [2, "));
  EXPECT_THAT(ErrorOf(WriteRecipe("  micro_batch_size: -3\n")),
              HasSubstr("recipe.yaml:4:21: data.micro_batch_size: is -3"));
  EXPECT_THAT(ErrorOf(WriteRecipe("threads: -1\n")),
              HasSubstr("recipe.yaml:4:10: threads: is -1, must be in [0, 4096]"));
  EXPECT_THAT(ErrorOf(WriteRecipe("epochs: 0\n")),
              HasSubstr("recipe.yaml:4:9: epochs: is 0, must be in [1, 1000000]"));
  EXPECT_THAT(ErrorOf(WriteRecipe("log_every: 0\n")),
              HasSubstr("recipe.yaml:4:12: log_every: is 0, must be at least 1"));
  EXPECT_THAT(ErrorOf(WriteRecipe("distributed: {nccl_timeout_s: .inf}\n")),
              HasSubstr("recipe.yaml:4:31: distributed.nccl_timeout_s: must be a positive"));
}

TEST(TrainConfigTest, PrecisionAndLossScalerAreCheckedNamingKeyAndLine) {
  EXPECT_THAT(ErrorOf(WriteRecipe("precision: fp8\n")),
              HasSubstr("recipe.yaml:4:12: precision: unknown precision 'fp8' (fp32, amp_bf16, "
                        "amp_fp16, pure_bf16)"));
  EXPECT_THAT(ErrorOf(WriteRecipe("grad_scaler:\n  backoff_factor: 2\n")),
              HasSubstr("recipe.yaml:5:19: grad_scaler.backoff_factor: must be in (0, 1), got 2"));
  EXPECT_THAT(ErrorOf(WriteRecipe("grad_scaler: {growth_interval: 0}\n")),
              HasSubstr("recipe.yaml:4:32: grad_scaler.growth_interval:"));
  for (const char* mode : {"fp32", "amp_bf16", "amp_fp16", "pure_bf16"}) {
    auto config = LoadTrainConfig(WriteRecipe(""), {std::string("precision=") + mode});
    ASSERT_TRUE(config.ok()) << mode << ": " << config.status();
    EXPECT_EQ(config->precision, mode);
  }
}

TEST(TrainConfigTest, OverridesAndDefaultsAreNamedToo) {
  const std::string path = WriteRecipe("");
  EXPECT_THAT(ErrorOf(path, {"distributed.bucket_mb=-1"}),
              HasSubstr("--set distributed.bucket_mb: distributed.bucket_mb: is -1"));
  // A key left at its default has no line: the message names the file.
  std::ofstream(path) << "model: tiny\n";
  EXPECT_THAT(ErrorOf(path), HasSubstr(path + ": data.train: is required"));
  ASSERT_TRUE(LoadTrainConfig(WriteRecipe(""), {}).ok());
}

}  // namespace
}  // namespace clipscale
