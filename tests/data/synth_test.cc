// The demo dataset: img2dataset's layout, deterministic bytes, and a reader
// that skips and counts damaged shards, images and captions.
#include "data/synth.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "core/file_util.h"
#include "data/tar.h"
#include "data/webdataset.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

SynthOptions Small(const std::string& out) {
  SynthOptions o;
  o.out = out;
  o.train = 25;
  o.val = 12;
  o.per_shard = 10;
  o.seed = 7;
  o.image_size = 48;
  return o;
}

TEST(SynthTest, LayoutIsImg2Dataset) {
  const std::string dir = testing::MakeTempDir();
  ASSERT_TRUE(WriteSynthDataset(Small(dir)).ok());
  for (const char* name : {"00000.tar", "00001.tar", "00002.tar", "00000_stats.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/train/" + name)) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/train/00003.tar"));
  std::vector<std::string> names;
  ASSERT_TRUE(ReadTar(dir + "/train/00001.tar", [&](const TarMember& m) {
                names.push_back(m.name);
                return absl::OkStatus();
              }).ok());
  ASSERT_EQ(names.size(), 30u);
  // Key = shard * 10^ceil(log10(per_shard)) + index, 9 digits; extensions sorted.
  EXPECT_EQ(names[0], "000000010.jpg");
  EXPECT_EQ(names[1], "000000010.json");
  EXPECT_EQ(names[2], "000000010.txt");
  auto stats = ReadFile(dir + "/train/00002_stats.json");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(nlohmann::json::parse(*stats)["successes"], 5);
}

TEST(SynthTest, SameArgumentsSameBytes) {
  const std::string a = testing::MakeTempDir() + "/a", b = a + "_b";
  SynthOptions o = Small(a);
  ASSERT_TRUE(WriteSynthDataset(o).ok());
  o.out = b;
  ASSERT_TRUE(WriteSynthDataset(o).ok());
  for (const char* file : {"train/00000.tar", "train/00002.tar", "val/00001.tar"}) {
    EXPECT_EQ(*ReadFile(a + "/" + file), *ReadFile(b + "/" + file)) << file;
  }
  o.out = b + "_seed";
  o.seed = 8;
  ASSERT_TRUE(WriteSynthDataset(o).ok());
  EXPECT_NE(*ReadFile(a + "/train/00000.tar"), *ReadFile(o.out + "/train/00000.tar"));
}

TEST(SynthTest, CaptionsDescribeTheScene) {
  const std::regex pattern(
      "(a|two|three) (small|large) (red|green|blue|yellow|purple|orange) "
      "(circle|square|triangle|star|cross)(s|es)? on a (grey|white|black) background");
  for (uint64_t i = 0; i < 200; ++i) {
    const Scene scene = RandomScene(3, 0, i);
    const std::string caption = SceneCaption(scene);
    EXPECT_TRUE(std::regex_match(caption, pattern)) << caption;
    EXPECT_EQ(SynthClassNames()[SceneClass(scene)],
              SynthColours()[scene.colour] + " " + SynthShapes()[scene.shape]);
  }
}

TEST(WebDatasetTest, KeyAndExtensionFollowWebDataset) {
  std::string key, ext;
  ASSERT_TRUE(SplitMemberName("a/b/000001.seg.PNG", &key, &ext));
  EXPECT_EQ(key, "a/b/000001");
  EXPECT_EQ(ext, "seg.png");
  EXPECT_FALSE(SplitMemberName("a.dir/noext", &key, &ext));
  auto paths = ExpandShardSpec("s/{008..011}.tar::t/x.tar");
  ASSERT_TRUE(paths.ok());
  EXPECT_EQ(*paths, (std::vector<std::string>{"s/008.tar", "s/009.tar", "s/010.tar", "s/011.tar",
                                              "t/x.tar"}));
  EXPECT_FALSE(ExpandShardSpec("s/{9..1}.tar").ok());
}

}  // namespace
}  // namespace clipscale
