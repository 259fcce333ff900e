// The trainer's data: the training split's index (the same on every rank,
// checked), this rank's streaming loader, the steps of each epoch, and the
// held-out split for evaluation.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "data/dataset_index.h"
#include "data/shard_cache.h"
#include "data/stream_loader.h"
#include "data/tokenizer.h"
#include "distributed/communicator.h"
#include "train/train_config.h"

namespace clipscale {

struct TrainData {
  std::unique_ptr<ShardCache> shard_cache;         // outlives the loader
  std::shared_ptr<const DatasetIndex> train, val;  // val: null without data.val
  std::unique_ptr<StreamLoader> loader;            // rows [rank·n, (rank+1)·n) of each step
  std::vector<int64_t> steps_per_epoch;
  int64_t total_steps = 0;  // over all epochs, capped by max_steps
};

// The folder for cached indexes: data.index_cache, else $CLIPSCALE_CACHE/index,
// else ~/.cache/clipscale/index.
std::string IndexCacheDir(const DataConfig& config);
// The node's cache of remote shards (data.shard_cache, else .../shards).
std::unique_ptr<ShardCache> MakeShardCache(const DataConfig& config);

// A collective: opens (building on first use) the indexes on every rank, stops
// if any rank sees a different training index (naming the first differing
// shard), and makes this rank's loader. `workers` decode threads; `device`:
// where training runs (on CUDA the batch buffers are page-locked, for
// asynchronous copies).
absl::StatusOr<TrainData> OpenTrainData(const TrainConfig& config, const ClipTokenizer& tokenizer,
                                        Communicator& comm, int workers,
                                        const torch::Device& device);

// A collective: fails on every rank, naming the first shard that differs,
// unless all ranks opened the same index.
absl::Status CheckSameIndex(const DatasetIndex& index, Communicator& comm,
                            const torch::Device& device);

// A collective: the bad-data counts summed over ranks, as metric names
// (data/bad_image, ...), plus what indexing dropped (data/index_*).
std::map<std::string, double> DataCounts(const StreamLoader& loader, const DatasetIndex& index,
                                         Communicator& comm, const torch::Device& device);

}  // namespace clipscale
