// The dataset index: what it records, what it drops and counts, its cache,
// and that damage to the index itself is caught.
#include "data/dataset_index.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/file_util.h"
#include "tests/data/loader_fixtures.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

TEST(DatasetIndexTest, RecordsEveryMemberOfImg2datasetShards) {
  const std::string dir = testing::MakeTempDir();
  testing::WriteJpegShards(dir, 3, 5);
  ASSERT_TRUE(DatasetIndex::Build(dir, dir + "/d.index").ok());
  auto index = DatasetIndex::Open(dir + "/d.index");
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ((*index)->shards().size(), 3u);  // _stats.json side files are not shards
  EXPECT_EQ((*index)->total_samples(), 15);
  auto samples = (*index)->ReadShard(1);
  ASSERT_TRUE(samples.ok()) << samples.status();
  ASSERT_EQ(samples->size(), 5u);
  EXPECT_EQ((*samples)[2].key, "000010002");
  // The recorded offsets point at the member bytes.
  auto tar = ReadFile((*index)->shards()[1].path);
  ASSERT_TRUE(tar.ok());
  const IndexedMember* txt = (*samples)[2].Find("txt");
  ASSERT_NE(txt, nullptr);
  EXPECT_EQ(tar->substr(txt->offset, txt->size), "sample 2 of shard 1");
  EXPECT_NE((*samples)[2].Find("jpg"), nullptr);
  EXPECT_NE((*samples)[2].Find("json"), nullptr);
  // Same shards, same hash; the hash covers each shard.
  ASSERT_TRUE(DatasetIndex::Build(dir, dir + "/again.index", {.threads = 1}).ok());
  auto again = DatasetIndex::Open(dir + "/again.index");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*index)->hash(), (*again)->hash());
  EXPECT_EQ((*index)->ShardHash(2), (*again)->ShardHash(2));
}

TEST(DatasetIndexTest, BrokenShardsAreCountedNotFatal) {
  const std::string dir = testing::MakeTempDir();
  const int good = testing::WriteBrokenShards(dir);
  const std::string spec = dir + "/broken.tar::" + dir + "/truncated.tar::" + dir +
                           "/liar.tar::" + dir + "/missing.tar";
  ASSERT_TRUE(DatasetIndex::Build(spec, dir + "/b.index").ok());
  auto index = DatasetIndex::Open(dir + "/b.index");
  ASSERT_TRUE(index.ok()) << index.status();
  const auto& shards = (*index)->shards();
  ASSERT_EQ(shards.size(), 4u);
  EXPECT_EQ((*index)->sources().size(), 4u);
  // broken.tar: every sample with an image member is kept (decoding is the
  // loader's job); the one without is dropped, the repeated .txt too.
  EXPECT_EQ(shards[0].samples, good + 8);
  EXPECT_EQ(shards[0].dropped.incomplete_samples, 1);
  EXPECT_EQ(shards[0].dropped.duplicate_members, 1);
  auto samples = (*index)->ReadShard(0);
  ASSERT_TRUE(samples.ok());
  // truncated.tar: the samples before the damage (the cut one has no member left).
  EXPECT_EQ(shards[1].samples, 2);
  EXPECT_EQ(shards[1].dropped.truncated_shards, 1);
  EXPECT_NE(shards[1].error.find("past the end of the file"), std::string::npos) << shards[1].error;
  // liar.tar: the 8 GiB claim is refused before anything is allocated.
  EXPECT_EQ(shards[2].samples, 1);
  EXPECT_EQ(shards[2].dropped.truncated_shards, 1);
  EXPECT_NE(shards[2].error.find("claims 8589934591 bytes"), std::string::npos) << shards[2].error;
  // missing.tar: recorded with its error and no samples.
  EXPECT_EQ(shards[3].samples, 0);
  EXPECT_EQ(shards[3].dropped.unreadable_shards, 1);
  EXPECT_EQ((*index)->dropped().incomplete_samples, 1);
}

TEST(DatasetIndexTest, CorruptIndexFilesAreRefused) {
  const std::string dir = testing::MakeTempDir();
  testing::WriteJpegShards(dir, 2, 3);
  ASSERT_TRUE(DatasetIndex::Build(dir, dir + "/d.index").ok());
  auto bytes = ReadFile(dir + "/d.index");
  ASSERT_TRUE(bytes.ok());
  // Cut short: the header is past the end.
  std::ofstream(dir + "/cut.index", std::ios::binary) << bytes->substr(0, bytes->size() - 10);
  EXPECT_EQ(DatasetIndex::Open(dir + "/cut.index").status().code(), absl::StatusCode::kDataLoss);
  // Not an index at all.
  std::ofstream(dir + "/text.index", std::ios::binary) << "hello, this is not an index file";
  EXPECT_EQ(DatasetIndex::Open(dir + "/text.index").status().code(),
            absl::StatusCode::kInvalidArgument);
  // A flipped byte in a shard's section: caught by its checksum on read.
  std::string flipped = *bytes;
  flipped[30] ^= 0x01;
  std::ofstream(dir + "/flip.index", std::ios::binary) << flipped;
  auto index = DatasetIndex::Open(dir + "/flip.index");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ((*index)->ReadShard(0).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE((*index)->ReadShard(1).ok());
}

TEST(DatasetIndexTest, CacheIsReusedAndRebuiltWhenAShardChanges) {
  const std::string dir = testing::MakeTempDir(), cache = dir + "/cache";
  const auto paths = testing::WriteJpegShards(dir, 2, 4);
  auto first = DatasetIndex::OpenOrBuild(dir, cache);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string path = (*first)->path();
  const auto built = std::filesystem::last_write_time(path);
  auto second = DatasetIndex::OpenOrBuild(dir, cache);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(std::filesystem::last_write_time((*second)->path()), built);  // reused
  EXPECT_EQ((*second)->hash(), (*first)->hash());
  // Shard 1 gains a sample: it is named, and the cache is rebuilt.
  testing::WriteJpegShards(dir, 1, 5, 1);
  EXPECT_EQ((*first)->ChangedShards().size(), 1u);
  EXPECT_NE((*first)->ChangedShards()[0].find(paths[1]), std::string::npos);
  auto third = DatasetIndex::OpenOrBuild(dir, cache);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ((*third)->total_samples(), 9);
  EXPECT_NE((*third)->hash(), (*first)->hash());
  // An explicit index file whose shards changed is refused, naming the shard.
  ASSERT_TRUE(DatasetIndex::Build(dir, dir + "/x.index").ok());
  testing::WriteJpegShards(dir, 1, 6, 0);
  auto stale = DatasetIndex::OpenOrBuild(dir + "/x.index", cache);
  ASSERT_FALSE(stale.ok());
  EXPECT_NE(stale.status().message().find(paths[0]), std::string::npos) << stale.status();
}

TEST(DatasetIndexTest, SpecLimitsAndErrors) {
  const std::string dir = testing::MakeTempDir();
  EXPECT_EQ(DatasetIndex::Build(dir + "/{0000000..9999999}.tar", dir + "/x.index").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DatasetIndex::Build(dir + "/{0..1000}/{0..3000}.tar", dir + "/x.index").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DatasetIndex::Build(dir + "/{5..1}.tar", dir + "/x.index").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DatasetIndex::Build(dir, dir + "/x.index").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DatasetIndex::Build("ftp://host/x.tar", dir + "/x.index").code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clipscale
