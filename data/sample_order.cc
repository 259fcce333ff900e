#include "data/sample_order.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/random.h"

namespace clipscale {
namespace {

uint64_t Round(uint64_t x, uint64_t key) {
  uint64_t z = x ^ key;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

FeistelPermutation::FeistelPermutation(uint64_t n, uint64_t key) : n_(n) {
  uint64_t bits = 2;
  while (bits < 64 && (uint64_t{1} << bits) < n) ++bits;
  bits += bits & 1;  // two equal halves
  half_bits_ = bits / 2;
  mask_ = (uint64_t{1} << half_bits_) - 1;
  SplitMix64 rng(key);
  for (auto& k : keys_) k = rng.Next();
}

uint64_t FeistelPermutation::operator()(uint64_t i) const {
  if (n_ <= 1) return 0;
  uint64_t x = i;
  do {  // cycle walking: the domain is < 4n, so a few rounds on average
    uint64_t left = x >> half_bits_, right = x & mask_;
    for (uint64_t k : keys_) {
      const uint64_t next = left ^ (Round(right, k) & mask_);
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

absl::StatusOr<EpochOrder> EpochOrder::Create(const std::vector<int64_t>& shard_samples,
                                              const std::vector<uint32_t>& shard_source,
                                              const SampleOrderOptions& options, int64_t epoch) {
  if (shard_samples.size() != shard_source.size()) {
    return absl::InvalidArgumentError("shard table sizes differ");
  }
  if (options.shuffle_block_shards < 1) {
    return absl::InvalidArgumentError("data.shuffle_block_shards: must be at least 1");
  }
  uint32_t sources = 0;
  for (uint32_t s : shard_source) sources = std::max(sources, s + 1);
  std::vector<double> weights = options.source_weights;
  if (weights.empty()) weights.assign(sources, 1.0);
  if (weights.size() < sources) {
    return absl::InvalidArgumentError(absl::StrCat("data.train_weights: ", weights.size(),
                                                   " weight(s) for ", sources, " sources"));
  }
  for (double w : weights) {
    if (!std::isfinite(w) || w < 0 || w > 1e6) {
      return absl::InvalidArgumentError(
          absl::StrCat("data.train_weights: ", w, " is not a weight (0 to 1e6)"));
    }
  }
  EpochOrder order;
  order.seed_ = options.seed;
  order.epoch_ = epoch;
  order.block_shards_ = options.shuffle_block_shards;
  order.shuffle_ = options.shuffle;
  const auto epoch_key = static_cast<uint64_t>(epoch);
  // The epoch's shard visits: whole repeats, then the fractional share.
  std::vector<std::vector<int32_t>> by_source(sources);
  for (size_t i = 0; i < shard_samples.size(); ++i) {
    if (shard_samples[i] > 0) by_source[shard_source[i]].push_back(static_cast<int32_t>(i));
  }
  for (uint32_t s = 0; s < sources; ++s) {
    const auto& shards = by_source[s];
    const double whole = std::floor(weights[s]);
    for (int64_t r = 0; r < static_cast<int64_t>(whole); ++r) {
      order.list_.insert(order.list_.end(), shards.begin(), shards.end());
    }
    const auto extra = static_cast<int64_t>(
        std::llround((weights[s] - whole) * static_cast<double>(shards.size())));
    if (extra > 0) {
      std::vector<int64_t> pick = Permutation(static_cast<int64_t>(shards.size()),
                                              MixSeed(options.seed, epoch_key, 0x5eed0000ULL + s));
      pick.resize(extra);
      std::sort(pick.begin(), pick.end());
      for (int64_t j : pick) order.list_.push_back(shards[j]);
    }
  }
  if (options.shuffle) {
    const std::vector<int64_t> perm =
        Permutation(static_cast<int64_t>(order.list_.size()), MixSeed(options.seed, epoch_key, 1));
    std::vector<int32_t> shuffled(order.list_.size());
    for (size_t i = 0; i < perm.size(); ++i) shuffled[i] = order.list_[perm[i]];
    order.list_ = std::move(shuffled);
  }
  order.counts_.resize(order.list_.size());
  order.block_start_.push_back(0);
  int64_t total = 0;
  for (size_t i = 0; i < order.list_.size(); ++i) {
    order.counts_[i] = shard_samples[order.list_[i]];
    total += order.counts_[i];
    if ((static_cast<int64_t>(i) + 1) % order.block_shards_ == 0 || i + 1 == order.list_.size()) {
      order.block_start_.push_back(total);
    }
  }
  return order;
}

SampleRef EpochOrder::At(int64_t p) const {
  const auto it = std::upper_bound(block_start_.begin(), block_start_.end(), p);
  const int64_t block = (it - block_start_.begin()) - 1;
  const int64_t start = block_start_[block];
  const int64_t block_size = block_start_[block + 1] - start;
  int64_t q = p - start;
  if (shuffle_) {
    const uint64_t key = MixSeed(MixSeed(seed_, static_cast<uint64_t>(epoch_), 2),
                                 static_cast<uint64_t>(block));
    q = static_cast<int64_t>(FeistelPermutation(static_cast<uint64_t>(block_size), key)(q));
  }
  int64_t entry = block * block_shards_;
  while (q >= counts_[entry]) q -= counts_[entry++];
  return {list_[entry], q};
}

}  // namespace clipscale
