// The other direction: clipscale's model configs equal OpenCLIP's JSON, and
// weights from a freshly initialised ClipModel load into open_clip strictly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/paths.h"
#include "core/status.h"
#include "models/clip_model.h"
#include "models/model_config.h"
#include "models/weights_io.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

std::vector<std::string> OpenClipModels() { return {"ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50"}; }

// open_clip's JSON for every model above, as our YAML schema, written by one
// Python run per process (importing open_clip dominates its time).
std::string OpenClipConfigDir() {
  static const std::string* dir = [] {
    auto* path = new std::string(testing::BinaryDir() + "/test_tmp/clip_openclip_configs");
    std::filesystem::remove_all(*path);
    std::filesystem::create_directories(*path);
    std::vector<std::string> args = OpenClipModels();
    args.insert(args.begin(), *path);
    CS_CHECK_OK(testing::RunPythonScript("clip_config_dump.py", args).status());
    return path;
  }();
  return *dir;
}

class ClipConfigTest : public ::testing::TestWithParam<std::string> {};

// configs/models/<name>.yaml against open_clip's model_configs/<name>.json,
// field by field, after both are bound to ModelConfig (so defaults count too).
TEST_P(ClipConfigTest, MatchesOpenClipJson) {
  auto ours = LoadModelConfig(GetParam());
  ASSERT_TRUE(ours.ok()) << ours.status();
  auto theirs = LoadConfigFile<ModelConfig>(OpenClipConfigDir() + "/" + GetParam() + ".yaml");
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_EQ(ConfigToYaml(*ours), ConfigToYaml(*theirs));
}

INSTANTIATE_TEST_SUITE_P(Models, ClipConfigTest, ::testing::ValuesIn(OpenClipModels()), TestName);

class ClipExportTest : public ::testing::TestWithParam<std::string> {};

// ClipModel(config) -> SaveWeights -> open_clip's model.load_state_dict(strict=True),
// dtypes checked too, values compared after loading.
TEST_P(ClipExportTest, InitialisedWeightsLoadIntoOpenClip) {
  const std::string model_name = GetParam();
  std::string config_arg = model_name;
  if (model_name == "tiny") {  // not an OpenCLIP model; Python builds it from our YAML
    auto path = FindDataFile("configs/models/tiny.yaml");
    ASSERT_TRUE(path.ok()) << path.status();
    config_arg = *path;
  }
  auto config = LoadModelConfig(model_name);
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string path = testing::MakeTempDir() + "/weights.safetensors";
  {
    ClipModel model(*config);
    ASSERT_TRUE(SaveWeights(*model, path, {{"model", model_name}}).ok());
  }
  auto out = testing::RunPythonScript("clip_load_check.py", {config_arg, path});
  std::filesystem::remove(path);  // hundreds of MB for the full-size models
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->rfind("ok ", 0), 0u) << *out;
}

INSTANTIATE_TEST_SUITE_P(Models, ClipExportTest, ::testing::Values("tiny", "ViT-B-32", "RN50"),
                         TestName);

}  // namespace
}  // namespace clipscale
