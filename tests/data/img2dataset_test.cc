// A real client: shards written by img2dataset itself (the venv's, from images
// a loopback HTTP server serves, some URLs 404 and one serves no image) are
// indexed, read, trained on and evaluated by the clipscale binary.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "data/dataset_index.h"
#include "data/webdataset.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

using nlohmann::json;

std::string Binary() { return testing::ClipscaleBinary(); }

testing::CommandResult Clipscale(const std::string& args) {
  return testing::RunCommand(testing::ShellQuote(Binary()) + " " + args);
}

class Img2DatasetTest : public ::testing::Test {
 protected:
  // One img2dataset run for all tests of the file: it costs most of the time.
  static void SetUpTestSuite() {
    // Not MakeTempDir(): outside a test it hands every suite the same "misc"
    // folder (and empties it), which tests running in parallel share.
    dir_ = new std::string(testing::BinaryDir() + "/test_tmp/Img2DatasetTest.shared");
    std::filesystem::remove_all(*dir_);
    std::filesystem::create_directories(*dir_);
    // A missing package, a server that does not start or img2dataset failing
    // all end the script non-zero: every test below then fails.
    auto out = testing::RunPythonScript("img2dataset_run.py", {*dir_});
    run_ = new json(out.ok() ? json::parse(*out, nullptr, /*allow_exceptions=*/false) : json());
    error_ = new std::string(!out.ok()              ? out.status().ToString()
                             : run_->is_discarded() ? "not JSON: " + *out
                                                    : "");
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete run_;
    delete error_;
  }
  void SetUp() override { ASSERT_TRUE(error_->empty()) << *error_; }

  static const json& Run() { return *run_; }
  static std::string Shards() { return *dir_ + "/shards"; }
  static std::string Dir() { return *dir_; }

 private:
  static std::string* dir_;
  static json* run_;
  static std::string* error_;
};
std::string* Img2DatasetTest::dir_ = nullptr;
json* Img2DatasetTest::run_ = nullptr;
std::string* Img2DatasetTest::error_ = nullptr;

TEST_F(Img2DatasetTest, DownloadedFromTheLoopbackServerWithFailedRows) {
  const int urls = Run()["urls"], missing = Run()["missing"], corrupt = Run()["corrupt"];
  EXPECT_EQ(Run()["requests"], urls) << "every row is fetched from 127.0.0.1, once";
  EXPECT_EQ(Run()["statuses"]["failed_to_download"], missing) << Run()["statuses"];
  EXPECT_EQ(Run()["statuses"]["failed_to_resize"], corrupt) << Run()["statuses"];
  EXPECT_EQ(Run()["successes"], urls - missing - corrupt);
  EXPECT_EQ(Run()["shards"].size(), 3u) << "44 rows at 16 per shard";
  for (const auto& shard : Run()["shards"]) {
    EXPECT_GT(shard["failed"], 0) << shard["tar"] << ": every shard has failed rows to skip";
    EXPECT_EQ(shard["keys"].size(), shard["successes"]) << shard["tar"];
  }
}

TEST_F(Img2DatasetTest, IndexCountsWhatImg2DatasetWrote) {
  const std::string index = Dir() + "/i2d.index";
  auto r = Clipscale("data index " + testing::ShellQuote(Shards()) + " --out " +
                     testing::ShellQuote(index) + " --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto opened = DatasetIndex::Open(index);
  ASSERT_TRUE(opened.ok()) << opened.status();
  const DatasetIndex& idx = **opened;
  EXPECT_EQ(idx.total_samples(), Run()["successes"].get<int64_t>());
  const IndexDropCounts dropped = idx.dropped();
  EXPECT_EQ(dropped.incomplete_samples + dropped.duplicate_members + dropped.truncated_shards +
                dropped.unreadable_shards,
            0);
  // The .parquet and _stats.json beside the tars are not shards.
  ASSERT_EQ(idx.shards().size(), Run()["shards"].size());
  for (size_t s = 0; s < idx.shards().size(); ++s) {
    const json& want = Run()["shards"][s];
    EXPECT_EQ(idx.shards()[s].path, want["tar"].get<std::string>());
    EXPECT_EQ(idx.shards()[s].samples, want["successes"].get<int64_t>()) << want["tar"];
    auto samples = idx.ReadShard(static_cast<int64_t>(s));
    ASSERT_TRUE(samples.ok()) << samples.status();
    std::vector<std::string> keys;
    for (const IndexedSample& sample : *samples) {
      keys.push_back(sample.key);
      EXPECT_NE(sample.Find("jpg"), nullptr) << sample.key;
      EXPECT_NE(sample.Find("txt"), nullptr) << sample.key;
      EXPECT_NE(sample.Find("json"), nullptr) << sample.key;
    }
    EXPECT_EQ(keys, want["keys"].get<std::vector<std::string>>()) << want["tar"];
  }
}

TEST_F(Img2DatasetTest, OurReaderSeesImg2DatasetsCaptions) {
  std::map<std::string, std::string> seen;
  for (const auto& shard : Run()["shards"]) {
    auto status = ReadShardSamples(shard["tar"], [&](ShardSample&& sample) {
      EXPECT_TRUE(sample.fields.count("jpg")) << sample.key;
      auto meta = json::parse(sample.fields["json"], nullptr, /*allow_exceptions=*/false);
      ASSERT_TRUE(meta.is_object()) << sample.key << ": " << sample.fields["json"];
      EXPECT_EQ(meta["key"], sample.key);
      EXPECT_EQ(meta["status"], "success");
      EXPECT_EQ(meta["caption"], sample.fields["txt"]);
      seen[sample.key] = sample.fields["txt"];
    });
    EXPECT_TRUE(status.ok()) << shard["tar"] << ": " << status;
  }
  EXPECT_EQ(seen, (Run()["captions"].get<std::map<std::string, std::string>>()));
}

TEST_F(Img2DatasetTest, TrainsAndEvaluatesOnImg2DatasetShards) {
  const std::string recipe = Dir() + "/recipe.yaml", run = Dir() + "/run";
  std::ofstream(recipe) << "model: tiny\n"
                           "model_overrides: [\"vision.image_size=32\", \"vision.patch_size=16\"]\n"
                           "data:\n  train: "
                        << Shards() << "\n  index_cache: " << Dir()
                        << "/index_cache\n  batch_size: 8\n"
                           "schedule:\n  lr: 1.0e-3\n  warmup_steps: 1\n"
                           "threads: 1\nlog_every: 1\nepochs: 1\n";
  auto r = Clipscale("train --config " + testing::ShellQuote(recipe) + " --set output=" + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // One epoch of 40 samples at batch 8: every sample once, none replaced.
  std::ifstream metrics(run + "/metrics.jsonl");
  ASSERT_TRUE(metrics.good()) << r.output;
  int steps = 0;
  for (std::string line; std::getline(metrics, line);) {
    const json record = json::parse(line);
    if (record.contains("train/loss")) ++steps;
    for (const auto& [name, value] : record.items()) {
      if (name.rfind("data/bad_", 0) == 0 || name == "data/replaced") {
        EXPECT_EQ(value, 0.0) << name << " at step " << record["step"];
      }
    }
  }
  EXPECT_EQ(steps, Run()["successes"].get<int>() / 8) << r.output;

  r = Clipscale("eval --run " + testing::ShellQuote(run) + " --data " +
                testing::ShellQuote(Shards()) + " --index-cache " +
                testing::ShellQuote(Dir() + "/index_cache") + " --batch-size 16 --workers 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Retrieval over the whole split (img2dataset writes no class labels).
  const std::regex samples("\\bsamples\\s+" + std::to_string(Run()["successes"].get<int>()) +
                           "(\\.0+)?\\b");
  EXPECT_TRUE(std::regex_search(r.output, samples)) << r.output;
  EXPECT_NE(r.output.find("image_to_text_R@1"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace clipscale
