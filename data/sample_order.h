// The order in which an epoch visits the samples of a dataset index: a pure
// function of (shard sample counts, sources, seed, epoch), so every rank, every
// world size and every resumed run computes the same order without talking.
//
// Shard-block shuffling keeps the working set bounded: the epoch's shards are
// permuted, cut into blocks of K consecutive shards, and the samples of each
// block are permuted by a keyed bijection (a Feistel network with cycle
// walking), so position p maps to its sample in O(log blocks) time and no
// permutation of samples is ever materialised. Memory: a few integers per
// shard (LAION-400M's 41,000 shards: about 1 MB).
//
// Weighted sources (OpenCLIP's --train-data-upsampling-factors): a source of
// weight w contributes each of its shards floor(w) times per epoch, plus a
// fraction w - floor(w) of them chosen afresh each epoch (by the seed). So an
// epoch is "every shard, weight times", its size can differ slightly between
// epochs when a weight is fractional, and weight 1 everywhere is the plain
// one-pass epoch.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

struct SampleRef {
  int64_t shard = 0;  // index into the dataset index's shard table
  int64_t sample = 0;  // position within the shard
  bool operator==(const SampleRef& o) const { return shard == o.shard && sample == o.sample; }
};

struct SampleOrderOptions {
  uint64_t seed = 0;
  bool shuffle = true;              // false: shards and samples in index order (evaluation)
  int64_t shuffle_block_shards = 4;  // K: shards whose samples are shuffled together
  std::vector<double> source_weights;  // per source; empty: 1 each
};

// A keyed bijection of [0, n): Permute(i) for i in [0, n) visits every value once.
class FeistelPermutation {
 public:
  FeistelPermutation(uint64_t n, uint64_t key);
  uint64_t operator()(uint64_t i) const;

 private:
  uint64_t n_, half_bits_, mask_;
  uint64_t keys_[4];
};

class EpochOrder {
 public:
  // `shard_samples[i]` and `shard_source[i]` come from the index's shard table.
  static absl::StatusOr<EpochOrder> Create(const std::vector<int64_t>& shard_samples,
                                           const std::vector<uint32_t>& shard_source,
                                           const SampleOrderOptions& options, int64_t epoch);

  int64_t size() const { return block_start_.back(); }  // samples in this epoch
  // The sample at position p of the epoch, 0 <= p < size().
  SampleRef At(int64_t p) const;
  // The shards of this epoch in visiting order (a shard may repeat with weights).
  const std::vector<int32_t>& shards() const { return list_; }

 private:
  EpochOrder() = default;
  std::vector<int64_t> counts_;       // samples of list_[i]
  std::vector<int32_t> list_;         // the epoch's shard visits, in order
  std::vector<int64_t> block_start_;  // first position of each block, then size()
  uint64_t seed_ = 0;
  int64_t epoch_ = 0, block_shards_ = 1;
  bool shuffle_ = true;
};

}  // namespace clipscale
