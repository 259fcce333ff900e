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

// --varied-captions: the same scenes, captions that leave out the count, the
// size and the background each with probability 1/2 (never colour or shape).
TEST(SynthTest, VariedCaptionsSaySomeOfTheScene) {
  const std::regex pattern(
      "(a |an |two |three )?((small|large) )?(red|green|blue|yellow|purple|orange) "
      "(circle|square|triangle|star|cross)(s|es)?( on a (grey|white|black) background)?");
  SceneVariety varied;
  varied.varied_captions = true;
  int said[3] = {0, 0, 0};
  const int n = 400;
  for (uint64_t i = 0; i < n; ++i) {
    const Scene full = RandomScene(3, 0, i), scene = RandomScene(3, 0, i, varied);
    ASSERT_EQ(scene.shape, full.shape);
    ASSERT_EQ(scene.colour, full.colour);
    ASSERT_EQ(scene.background, full.background);
    ASSERT_EQ(scene.objects.size(), full.objects.size());
    const std::string caption = SceneCaption(scene);
    std::smatch m;
    ASSERT_TRUE(std::regex_match(caption, m, pattern)) << caption;
    const size_t count = scene.objects.size();
    // One object is always "a"/"an" (by the next word's first letter); more are
    // counted only when the caption says the count.
    const std::string article = m[1].str();
    if (count == 1) {
      EXPECT_EQ(article, std::string("aeiou").find(caption[article.size()]) == std::string::npos
                             ? "a "
                             : "an ")
          << caption;
    } else {
      EXPECT_EQ(article, scene.says_count ? (count == 2 ? "two " : "three ") : "") << caption;
      EXPECT_FALSE(m[6].str().empty()) << caption;  // plural
    }
    EXPECT_EQ(m[3].str(), scene.says_size ? (scene.large ? "large" : "small") : "") << caption;
    EXPECT_EQ(m[8].str(), scene.says_background ? SynthBackgrounds()[scene.background] : "")
        << caption;
    EXPECT_EQ(m[4].str(), SynthColours()[scene.colour]);
    EXPECT_EQ(m[5].str(), SynthShapes()[scene.shape]);
    said[0] += scene.says_count;
    said[1] += scene.says_size;
    said[2] += scene.says_background;
  }
  for (int k = 0; k < 3; ++k) {  // each about half the time (binomial sd 10)
    EXPECT_GT(said[k], n / 2 - 50) << k;
    EXPECT_LT(said[k], n / 2 + 50) << k;
  }
  EXPECT_EQ(SceneCaption(RandomScene(3, 0, 0)), SceneCaption(RandomScene(3, 0, 0, SceneVariety{})));
}

TEST(SynthTest, VarietyLimitsTheScenes) {
  SceneVariety plain;
  plain.backgrounds = 1;
  plain.sizes = 1;
  plain.max_objects = 1;
  for (uint64_t i = 0; i < 100; ++i) {
    const Scene scene = RandomScene(3, 0, i, plain);
    EXPECT_EQ(scene.background, 0);
    EXPECT_FALSE(scene.large);
    EXPECT_EQ(scene.objects.size(), 1u);
  }
  SynthOptions o = Small(testing::MakeTempDir() + "/bad");
  o.variety.max_objects = 4;
  EXPECT_FALSE(WriteSynthDataset(o).ok());
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
