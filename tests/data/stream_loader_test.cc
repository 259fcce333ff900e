// The streaming loader: the ranks' slices add up to the one-process batch for
// any W, Seek resumes exactly, the thread count never changes a byte, and bad
// samples are replaced the same way every time and counted.
#include "data/stream_loader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "tests/data/loader_fixtures.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

constexpr int kSize = 16;

struct Rows {
  std::vector<std::string> keys;
  std::vector<float> images;
  std::vector<int64_t> tokens, labels;
  void Append(const LoadedBatch& b, int context) {
    keys.insert(keys.end(), b.keys.begin(), b.keys.begin() + b.rows);
    images.insert(images.end(), b.images, b.images + b.rows * 3 * kSize * kSize);
    tokens.insert(tokens.end(), b.tokens, b.tokens + b.rows * context);
    labels.insert(labels.end(), b.labels, b.labels + b.rows);
  }
  bool operator==(const Rows& o) const {
    return keys == o.keys && tokens == o.tokens && labels == o.labels &&
           images.size() == o.images.size() &&
           std::memcmp(images.data(), o.images.data(), images.size() * sizeof(float)) == 0;
  }
};

class StreamLoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The suite's own folder: MakeTempDir() outside a test is one shared "misc".
    dir_ = new std::string(testing::BinaryDir() + "/test_tmp/StreamLoaderTest.shared");
    std::filesystem::remove_all(*dir_);
    std::filesystem::create_directories(*dir_);
    testing::WriteJpegShards(*dir_, 5, 13);  // 65 samples: uneven shards and blocks
    auto tokenizer = ClipTokenizer::LoadDefault();
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = new ClipTokenizer(*tokenizer);
  }
  static std::shared_ptr<const DatasetIndex> Index(const std::string& spec) {
    auto index = DatasetIndex::OpenOrBuild(spec, *dir_ + "/cache");
    EXPECT_TRUE(index.ok()) << index.status();
    return *index;
  }
  static StreamLoaderOptions Options(int64_t batch, int world, int rank) {
    StreamLoaderOptions o;
    o.order.seed = 11;
    o.order.shuffle_block_shards = 2;
    o.global_batch = batch;
    o.slice_size = batch / world;
    o.slice_begin = rank * o.slice_size;
    o.image_size = kSize;
    o.context_length = 12;
    o.workers = 2;
    return o;
  }
  // `steps` consecutive batches from (epoch, step) on.
  static Rows Read(const std::string& spec, const StreamLoaderOptions& o, int64_t epoch,
                   int64_t step, int steps) {
    auto loader = StreamLoader::Create(Index(spec), tokenizer_, o);
    EXPECT_TRUE(loader.ok()) << loader.status();
    EXPECT_TRUE((*loader)->Seek(epoch, step).ok());
    Rows rows;
    for (int i = 0; i < steps; ++i) {
      auto batch = (*loader)->Next();
      EXPECT_TRUE(batch.ok() && *batch) << batch.status();
      rows.Append(**batch, o.context_length);
    }
    return rows;
  }
  static std::string* dir_;
  static ClipTokenizer* tokenizer_;
};
std::string* StreamLoaderTest::dir_ = nullptr;
ClipTokenizer* StreamLoaderTest::tokenizer_ = nullptr;

TEST_F(StreamLoaderTest, SlicesOfAnyWorldSizeConcatenateToTheOneProcessBatch) {
  const int64_t batch = 8;  // 65 samples: 8 steps per epoch, a tail of 1 dropped
  auto loader = StreamLoader::Create(Index(*dir_), tokenizer_, Options(batch, 1, 0));
  ASSERT_TRUE(loader.ok());
  EXPECT_EQ(*(*loader)->StepsInEpoch(0), 8);
  // Two epochs, step by step: for W = 2 and 4 the ranks' rows, concatenated
  // per step, are the one-process rows.
  std::vector<Rows> one(16);
  for (int s = 0; s < 16; ++s) one[s] = Read(*dir_, Options(batch, 1, 0), s / 8, s % 8, 1);
  std::set<std::string> epoch0;
  for (int s = 0; s < 8; ++s) epoch0.insert(one[s].keys.begin(), one[s].keys.end());
  EXPECT_EQ(epoch0.size(), 64u);  // an epoch never repeats a sample
  EXPECT_NE(one[0].keys, one[8].keys);  // reshuffled
  for (int world : {2, 4}) {
    std::vector<Rows> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(Read(*dir_, Options(batch, world, r), 0, 0, 16));
    for (int s = 0; s < 16; ++s) {
      Rows joined;
      const int64_t n = batch / world;
      for (int r = 0; r < world; ++r) {
        joined.keys.insert(joined.keys.end(), ranks[r].keys.begin() + s * n,
                           ranks[r].keys.begin() + (s + 1) * n);
        joined.images.insert(joined.images.end(),
                             ranks[r].images.begin() + s * n * 3 * kSize * kSize,
                             ranks[r].images.begin() + (s + 1) * n * 3 * kSize * kSize);
        joined.tokens.insert(joined.tokens.end(), ranks[r].tokens.begin() + s * n * 12,
                             ranks[r].tokens.begin() + (s + 1) * n * 12);
        joined.labels.insert(joined.labels.end(), ranks[r].labels.begin() + s * n,
                             ranks[r].labels.begin() + (s + 1) * n);
      }
      EXPECT_TRUE(joined == one[s]) << "W=" << world << " step " << s;
    }
  }
}

TEST_F(StreamLoaderTest, SeekYieldsTheUninterruptedSequence) {
  const Rows whole = Read(*dir_, Options(8, 2, 1), 0, 0, 14);
  // Mid-epoch and across the epoch boundary, on a fresh loader and on one
  // that was already running elsewhere.
  const Rows resumed = Read(*dir_, Options(8, 2, 1), 0, 5, 9);
  Rows tail;
  tail.keys.assign(whole.keys.begin() + 5 * 4, whole.keys.end());
  tail.images.assign(whole.images.begin() + 5 * 4 * 3 * kSize * kSize, whole.images.end());
  tail.tokens.assign(whole.tokens.begin() + 5 * 4 * 12, whole.tokens.end());
  tail.labels.assign(whole.labels.begin() + 5 * 4, whole.labels.end());
  EXPECT_TRUE(resumed == tail);
  auto loader = StreamLoader::Create(Index(*dir_), tokenizer_, Options(8, 2, 1));
  ASSERT_TRUE(loader.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*loader)->Next().ok());
  ASSERT_TRUE((*loader)->Seek(1, 2).ok());
  auto batch = (*loader)->Next();
  ASSERT_TRUE(batch.ok() && *batch);
  EXPECT_EQ((*batch)->epoch, 1);
  EXPECT_EQ((*batch)->step, 2);
  EXPECT_EQ(std::vector<std::string>((*batch)->keys.begin(), (*batch)->keys.end()),
            std::vector<std::string>(whole.keys.begin() + 10 * 4, whole.keys.begin() + 11 * 4));
  // At another world size, the same global rows: W=4 ranks 2 and 3 hold W=2 rank 1's.
  const Rows r2 = Read(*dir_, Options(8, 4, 2), 0, 5, 1), r3 = Read(*dir_, Options(8, 4, 3), 0, 5, 1);
  std::vector<std::string> keys = r2.keys;
  keys.insert(keys.end(), r3.keys.begin(), r3.keys.end());
  EXPECT_EQ(keys, std::vector<std::string>(tail.keys.begin(), tail.keys.begin() + 4));
}

TEST_F(StreamLoaderTest, DecodeThreadsDoNotChangeAByte) {
  StreamLoaderOptions one = Options(16, 1, 0), many = Options(16, 1, 0);
  one.workers = 1;
  one.prefetch_steps = 1;
  many.workers = 5;
  many.prefetch_steps = 4;
  EXPECT_TRUE(Read(*dir_, one, 0, 0, 6) == Read(*dir_, many, 0, 0, 6));
  // The crop is drawn per position: augmentation on gives other pixels than off.
  StreamLoaderOptions plain = Options(16, 1, 0);
  plain.augment = false;
  EXPECT_FALSE(Read(*dir_, plain, 0, 0, 1) == Read(*dir_, one, 0, 0, 1));
}

TEST_F(StreamLoaderTest, EvaluationRangesAreSequentialAndPartial) {
  StreamLoaderOptions o;
  o.order.shuffle = false;
  o.image_size = kSize;
  o.context_length = 12;
  o.augment = false;
  o.fast_decode = false;
  o.slice_size = 10;
  o.range_begin = 20;
  o.range_end = 45;
  o.replace_bad = false;
  auto loader = StreamLoader::Create(Index(*dir_), tokenizer_, o);
  ASSERT_TRUE(loader.ok());
  EXPECT_EQ(*(*loader)->StepsInEpoch(0), 3);
  std::vector<std::string> keys;
  std::vector<int64_t> sizes;
  while (true) {
    auto batch = (*loader)->Next();
    ASSERT_TRUE(batch.ok());
    if (!*batch) break;
    sizes.push_back((*batch)->rows);
    keys.insert(keys.end(), (*batch)->keys.begin(), (*batch)->keys.begin() + (*batch)->rows);
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{10, 10, 5}));
  EXPECT_EQ(keys.front(), "000010007");  // position 20 = shard 1, sample 7
  EXPECT_EQ(keys.back(), "000030005");   // position 44 = shard 3, sample 5
}

TEST_F(StreamLoaderTest, BadSamplesAreReplacedDeterministicallyAndCounted) {
  const std::string dir = testing::MakeTempDir();
  testing::WriteBrokenShards(dir);
  const std::string spec = dir + "/broken.tar::" + dir + "/truncated.tar::" + dir + "/liar.tar";
  StreamLoaderOptions o = Options(4, 1, 0);
  o.order.source_weights = {1, 1, 1};
  auto index = Index(spec);
  ASSERT_EQ(index->total_samples(), 17 + 2 + 1);
  auto run = [&](int world, int rank, int workers, BadDataCounts* counts) {
    StreamLoaderOptions opts = Options(4, world, rank);
    opts.order.source_weights = {1, 1, 1};
    opts.workers = workers;
    auto loader = StreamLoader::Create(index, tokenizer_, opts);
    EXPECT_TRUE(loader.ok());
    Rows rows;
    for (int i = 0; i < 10; ++i) {  // two epochs of 5 steps
      auto batch = (*loader)->Next();
      EXPECT_TRUE(batch.ok() && *batch);
      for (int64_t r = 0; r < (*batch)->rows; ++r) EXPECT_EQ((*batch)->valid[r], 1);
      rows.Append(**batch, opts.context_length);
    }
    if (counts) *counts = (*loader)->counts();
    return rows;
  };
  BadDataCounts counts;
  const Rows first = run(1, 0, 3, &counts);
  for (const std::string& key : first.keys) EXPECT_EQ(key.rfind("bad_", 0), std::string::npos) << key;
  EXPECT_NE(std::find(first.keys.begin(), first.keys.end(), "sniffed"), first.keys.end());
  // Each bad sample is met once per epoch (plus when drawn as a replacement).
  EXPECT_GE(counts.bad_image, 2 * 4);           // corrupt, zero-byte, not an image, no pixels
  EXPECT_GE(counts.bad_image_too_large, 2 * 1);  // the 40000 x 40000 PNG
  EXPECT_GE(counts.bad_caption, 2 * 3);          // missing, non-UTF-8, blank
  EXPECT_EQ(counts.unreplaceable, 0);
  EXPECT_EQ(counts.samples, 40);
  EXPECT_GE(counts.replaced, 2 * 8);
  // The same replacements on every run, thread count and world size.
  EXPECT_TRUE(run(1, 0, 1, nullptr) == first);
  Rows halves[2] = {run(2, 0, 2, nullptr), run(2, 1, 2, nullptr)};
  for (int s = 0; s < 10; ++s) {
    for (int r = 0; r < 2; ++r) {
      for (int i = 0; i < 2; ++i) EXPECT_EQ(halves[r].keys[s * 2 + i], first.keys[s * 4 + r * 2 + i]);
    }
  }
}

TEST_F(StreamLoaderTest, AShardChangedAfterIndexingIsNamedAndItsSamplesReplaced) {
  const std::string dir = testing::MakeTempDir();
  testing::WriteJpegShards(dir, 2, 6);
  ASSERT_TRUE(DatasetIndex::Build(dir, dir + "/d.index").ok());
  auto index = DatasetIndex::Open(dir + "/d.index");
  ASSERT_TRUE(index.ok());
  testing::WriteJpegShards(dir, 1, 6, 1);  // same count, new bytes and mtime
  auto loader = StreamLoader::Create(*index, tokenizer_, Options(4, 1, 0));
  ASSERT_TRUE(loader.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*loader)->Next().ok());
  EXPECT_GE((*loader)->counts().bad_shard, 6);
  EXPECT_EQ((*loader)->counts().unreplaceable, 0);
}

TEST_F(StreamLoaderTest, RejectsImpossibleOptions) {
  auto index = Index(*dir_);
  StreamLoaderOptions o = Options(8, 2, 0);
  o.slice_begin = 6;  // 6 + 4 > 8
  EXPECT_FALSE(StreamLoader::Create(index, tokenizer_, o).ok());
  o = Options(128, 1, 0);  // more than the 65 samples
  auto loader = StreamLoader::Create(index, tokenizer_, o);
  ASSERT_TRUE(loader.ok());
  EXPECT_EQ((*loader)->Next().status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace clipscale
