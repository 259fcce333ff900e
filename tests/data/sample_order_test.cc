// The epoch order: a permutation of the epoch's samples, a pure function of
// (counts, seed, epoch), bounded memory at LAION scale, and slices that add up
// to the global batch for any world size.
#include "data/sample_order.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>

namespace clipscale {
namespace {

int64_t ResidentKiB() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

TEST(FeistelPermutationTest, IsABijectionForAwkwardSizes) {
  for (uint64_t n : {1, 2, 3, 5, 17, 1000, 4097, 65537}) {
    FeistelPermutation f(n, 42 + n);
    std::vector<bool> seen(n);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t v = f(i);
      ASSERT_LT(v, n);
      ASSERT_FALSE(seen[v]) << "n=" << n << " i=" << i;
      seen[v] = true;
    }
  }
}

TEST(FeistelPermutationTest, DependsOnTheKey) {
  FeistelPermutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i);
  EXPECT_LT(same, 20);  // about 1 expected for two random permutations
}

std::vector<SampleRef> Epoch(const EpochOrder& order) {
  std::vector<SampleRef> out;
  for (int64_t p = 0; p < order.size(); ++p) out.push_back(order.At(p));
  return out;
}

TEST(EpochOrderTest, VisitsEverySampleOnceAndShuffles) {
  const std::vector<int64_t> counts = {7, 0, 10, 3, 12, 1, 9};
  const std::vector<uint32_t> sources(counts.size(), 0);
  SampleOrderOptions options;
  options.seed = 5;
  options.shuffle_block_shards = 2;
  auto order = EpochOrder::Create(counts, sources, options, 0);
  ASSERT_TRUE(order.ok()) << order.status();
  ASSERT_EQ(order->size(), 42);
  std::set<std::pair<int64_t, int64_t>> seen;
  int64_t in_place = 0, p = 0;
  for (const SampleRef& r : Epoch(*order)) {
    ASSERT_GE(r.sample, 0);
    ASSERT_LT(r.sample, counts[r.shard]);
    seen.insert({r.shard, r.sample});
    in_place += r.sample == p++;
  }
  EXPECT_EQ(seen.size(), 42u);
  EXPECT_LT(in_place, 10);
  // Pure function of (counts, seed, epoch); another epoch or seed differs.
  auto again = EpochOrder::Create(counts, sources, options, 0);
  EXPECT_EQ(Epoch(*order), Epoch(*again));
  auto next = EpochOrder::Create(counts, sources, options, 1);
  EXPECT_NE(Epoch(*order), Epoch(*next));
  options.seed = 6;
  EXPECT_NE(Epoch(*order), Epoch(*EpochOrder::Create(counts, sources, options, 0)));
}

TEST(EpochOrderTest, UnshuffledIsIndexOrder) {
  const std::vector<int64_t> counts = {2, 3};
  SampleOrderOptions options;
  options.shuffle = false;
  auto order = EpochOrder::Create(counts, {0, 0}, options, 3);
  ASSERT_TRUE(order.ok());
  const std::vector<SampleRef> want = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {1, 2}};
  EXPECT_EQ(Epoch(*order), want);
}

TEST(EpochOrderTest, BlocksBoundTheWorkingSet) {
  // Consecutive positions stay within one block of K shards, except at a boundary.
  std::vector<int64_t> counts(40, 100);
  SampleOrderOptions options;
  options.shuffle_block_shards = 4;
  auto order = EpochOrder::Create(counts, std::vector<uint32_t>(40, 0), options, 0);
  ASSERT_TRUE(order.ok());
  for (int64_t block = 0; block < 10; ++block) {
    std::set<int64_t> shards;
    for (int64_t p = block * 400; p < (block + 1) * 400; ++p) shards.insert(order->At(p).shard);
    EXPECT_EQ(shards.size(), 4u);
  }
}

TEST(EpochOrderTest, SourceWeightsRepeatAndSubsample) {
  // Source 0: 4 shards of 10, weight 2 -> each twice. Source 1: 4 shards of
  // 10, weight 0.5 -> 2 of them, chosen per epoch.
  const std::vector<int64_t> counts(8, 10);
  const std::vector<uint32_t> sources = {0, 0, 0, 0, 1, 1, 1, 1};
  SampleOrderOptions options;
  options.source_weights = {2.0, 0.5};
  std::set<std::set<int64_t>> picked;
  for (int64_t epoch = 0; epoch < 6; ++epoch) {
    auto order = EpochOrder::Create(counts, sources, options, epoch);
    ASSERT_TRUE(order.ok());
    EXPECT_EQ(order->size(), 4 * 10 * 2 + 2 * 10);
    std::map<int64_t, int> visits;
    for (const SampleRef& r : Epoch(*order)) ++visits[r.shard];
    std::set<int64_t> from_one;
    for (auto [shard, n] : visits) {
      EXPECT_EQ(n, shard < 4 ? 20 : 10) << "shard " << shard;
      if (shard >= 4) from_one.insert(shard);
    }
    EXPECT_EQ(from_one.size(), 2u);
    picked.insert(from_one);
  }
  EXPECT_GT(picked.size(), 1u);  // a fresh choice per epoch
  options.source_weights = {1.0};
  EXPECT_FALSE(EpochOrder::Create(counts, sources, options, 0).ok());  // too few weights
  options.source_weights = {1.0, -1.0};
  EXPECT_FALSE(EpochOrder::Create(counts, sources, options, 0).ok());
}

// LAION-400M's shape without any files: 41,000 shards of 10,000 samples, a
// global batch of 32,768 over 1,024 ranks.
TEST(EpochOrderTest, LaionScaleBoundedMemoryAndExactSlices) {
  const int64_t shards = 41000, per_shard = 10000, batch = 32768, world = 1024;
  const int64_t before = ResidentKiB();
  std::vector<int64_t> counts(shards, per_shard);
  std::vector<uint32_t> sources(shards, 0);
  SampleOrderOptions options;
  options.seed = 7;
  auto order = EpochOrder::Create(counts, sources, options, 3);
  ASSERT_TRUE(order.ok());
  ASSERT_EQ(order->size(), shards * per_shard);
  // The order's tables plus the caller's: a few integers per shard, no per-sample state.
  // 400M samples as an int64 permutation would be 3.2 GB; the bound is 32 MB.
  const int64_t grown_kib = ResidentKiB() - before;
  std::printf("order for %lld samples: %lld KiB resident\n",
              static_cast<long long>(order->size()), static_cast<long long>(grown_kib));
  EXPECT_LT(grown_kib, 32 * 1024);
  // Steps anywhere in the epoch: the ranks' slices (B/W each) add up to the
  // step's global batch, B distinct samples.
  const int64_t steps = order->size() / batch;
  for (int64_t step : {int64_t{0}, steps / 3, steps - 1}) {
    std::set<std::pair<int64_t, int64_t>> global, from_slices;
    for (int64_t i = 0; i < batch; ++i) {
      const SampleRef r = order->At(step * batch + i);
      global.insert({r.shard, r.sample});
    }
    ASSERT_EQ(global.size(), static_cast<size_t>(batch));
    const int64_t n = batch / world;
    for (int64_t rank = 0; rank < world; ++rank) {
      for (int64_t i = 0; i < n; ++i) {
        const SampleRef r = order->At(step * batch + rank * n + i);
        from_slices.insert({r.shard, r.sample});
      }
    }
    EXPECT_EQ(from_slices, global) << "step " << step;
  }
}

}  // namespace
}  // namespace clipscale
