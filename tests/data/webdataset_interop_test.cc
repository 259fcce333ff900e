// Our shards read back by the `webdataset` package (the venv's, the version
// OpenCLIP trains with): the samples, keys and every member's bytes it yields
// are the ones our reader yields, and OpenCLIP's decode pipeline accepts them.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "data/synth.h"
#include "data/webdataset.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

using nlohmann::json;

struct Sample {
  std::string key, url;
  std::map<std::string, std::string> fields;  // extension -> bytes
};

// `clipscale data synth --train 25 --val 12 --per-shard 10 --image-size 48`:
// both splits, 5 shards, two of them short.
std::vector<std::string> SynthShards(const std::string& dir) {
  SynthOptions o;
  o.out = dir;
  o.train = 25;
  o.val = 12;
  o.per_shard = 10;
  o.seed = 11;
  o.image_size = 48;
  EXPECT_TRUE(WriteSynthDataset(o).ok());
  auto paths = ExpandShardSpec(dir + "/train::" + dir + "/val");
  EXPECT_TRUE(paths.ok()) << paths.status();
  return paths.ok() ? *paths : std::vector<std::string>{};
}

std::vector<Sample> OurSamples(const std::vector<std::string>& shards) {
  std::vector<Sample> out;
  for (const std::string& shard : shards) {
    auto status = ReadShardSamples(shard, [&](ShardSample&& s) {
      out.push_back({s.key, shard, std::move(s.fields)});
    });
    EXPECT_TRUE(status.ok()) << shard << ": " << status;
  }
  return out;
}

// The synth shards, our reading of them and webdataset_read.py's, once for
// the file: the Python side (importing torch through webdataset) is the cost.
class WebDatasetInterop : public ::testing::Test {
 protected:
  struct Shared {
    std::vector<std::string> shards;
    std::vector<Sample> ours;
    json theirs;
    std::string error;  // the script's failure: no webdataset package fails, never skips
  };
  static void SetUpTestSuite() {
    shared_ = new Shared;
    // Not MakeTempDir(): outside a test it hands every suite the same "misc"
    // folder (and empties it), which tests running in parallel share.
    const std::string dir = testing::BinaryDir() + "/test_tmp/WebDatasetInterop.shared";
    std::filesystem::remove_all(dir);
    shared_->shards = SynthShards(dir);
    shared_->ours = OurSamples(shared_->shards);
    auto out = testing::RunPythonScript("webdataset_read.py", shared_->shards);
    if (!out.ok()) {
      shared_->error = out.status().ToString();
    } else if (shared_->theirs = json::parse(*out, nullptr, false);
               shared_->theirs.is_discarded()) {
      shared_->error = "not JSON: " + *out;
    }
  }
  static void TearDownTestSuite() { delete shared_; }
  void SetUp() override {
    ASSERT_EQ(shared_->shards.size(), 5u);
    ASSERT_EQ(shared_->ours.size(), 37u);
    ASSERT_TRUE(shared_->error.empty()) << shared_->error;
  }
  static const std::vector<Sample>& Ours() { return shared_->ours; }
  static const json& Theirs() { return shared_->theirs; }

 private:
  static Shared* shared_;
};
WebDatasetInterop::Shared* WebDatasetInterop::shared_ = nullptr;

TEST_F(WebDatasetInterop, WebDatasetPackageReadsOurShardsAsWeDo) {
  const std::vector<Sample>& ours = Ours();
  ASSERT_EQ(Theirs()["samples"].size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    const json& t = Theirs()["samples"][i];
    SCOPED_TRACE("sample " + std::to_string(i) + " (" + ours[i].key + ")");
    EXPECT_EQ(t["key"], ours[i].key);
    EXPECT_EQ(t["url"], ours[i].url);
    std::map<std::string, std::string> fields;
    for (const auto& [extension, encoded] : t["fields"].items()) {
      ASSERT_TRUE(absl::Base64Unescape(encoded.get<std::string>(), &fields[extension]));
    }
    EXPECT_EQ(fields.size(), 3u);  // jpg, json, txt
    // Byte equality of every member (so of the image's sha256 too); on a
    // mismatch, name the member rather than dumping JPEG bytes.
    ASSERT_EQ(fields.size(), ours[i].fields.size());
    for (const auto& [extension, bytes] : ours[i].fields) {
      ASSERT_TRUE(fields.count(extension)) << extension;
      EXPECT_TRUE(fields[extension] == bytes)
          << extension << ": " << fields[extension].size() << " bytes vs our " << bytes.size();
    }
  }
}

TEST_F(WebDatasetInterop, OpenClipPipelineDecodesOurShards) {
  const std::vector<Sample>& ours = Ours();
  const json& decoded = Theirs()["openclip"];
  ASSERT_EQ(decoded.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(decoded[i][0], 48) << ours[i].key;
    EXPECT_EQ(decoded[i][1], 48) << ours[i].key;
    EXPECT_EQ(decoded[i][2], ours[i].fields.at("txt")) << ours[i].key;
  }
}

}  // namespace
}  // namespace clipscale
