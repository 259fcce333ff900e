#include "train/train_data.h"

#include <cstdlib>
#include <cstring>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "train/host_collectives.h"

namespace clipscale {
namespace {

// The int64 of a hash's bits, so MPI's MAX and MIN can compare them.
int64_t AsInt64(uint64_t h) {
  int64_t v;
  std::memcpy(&v, &h, sizeof v);
  return v;
}

std::string CacheRoot() {
  if (const char* cache = std::getenv("CLIPSCALE_CACHE"); cache && *cache) return cache;
  const char* home = std::getenv("HOME");
  return absl::StrCat(home && *home ? home : ".", "/.cache/clipscale");
}

}  // namespace

std::string IndexCacheDir(const DataConfig& config) {
  return config.index_cache.empty() ? CacheRoot() + "/index" : config.index_cache;
}

std::unique_ptr<ShardCache> MakeShardCache(const DataConfig& config) {
  ShardCacheOptions options;
  options.dir = config.shard_cache.empty() ? CacheRoot() + "/shards" : config.shard_cache;
  options.max_bytes = static_cast<uint64_t>(config.shard_cache_gb * 1e9);
  return std::make_unique<ShardCache>(options);
}

absl::Status CheckSameIndex(const DatasetIndex& index, Communicator& comm,
                            const torch::Device& device) {
  if (comm.size() == 1) return absl::OkStatus();
  const auto shards = static_cast<int64_t>(index.shards().size());
  const HostMaxMin head = HostAllMaxMin({AsInt64(index.hash()), shards}, comm, device);
  if (head.same(0)) return absl::OkStatus();
  if (!head.same(1)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ranks see different training datasets: ", shards, " shards here, ", head.max[1],
        " on another rank (", index.spec(), ")"));
  }
  std::vector<int64_t> hashes(shards);
  for (int64_t i = 0; i < shards; ++i) hashes[i] = AsInt64(index.ShardHash(i));
  const HostMaxMin all = HostAllMaxMin(hashes, comm, device);
  for (int64_t i = 0; i < shards; ++i) {
    if (!all.same(static_cast<size_t>(i))) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the ranks see different training datasets: shard ", index.shards()[i].path,
          " differs (size, mtime or contents) between ranks; index it once and pass the .index"));
    }
  }
  return absl::FailedPreconditionError("the ranks see different training datasets");
}

absl::StatusOr<TrainData> OpenTrainData(const TrainConfig& config, const ClipTokenizer& tokenizer,
                                        Communicator& comm, int workers,
                                        const torch::Device& device) {
  TrainData data;
  const std::string cache = IndexCacheDir(config.data);
  data.shard_cache = MakeShardCache(config.data);
  IndexBuildOptions build;
  build.threads = workers;
  build.cache = data.shard_cache.get();
  auto train = DatasetIndex::OpenOrBuild(config.data.train, cache, build);
  // Every rank reaches the check, also one whose index failed to open.
  torch::Tensor failed = torch::full({1}, train.ok() ? 0L : 1L, torch::kInt64);
  HostAllReduce(failed, ReduceOp::kMax, comm, device);
  if (!train.ok()) return Annotate(train.status(), "data.train");
  if (failed.item<int64_t>() != 0) {
    return absl::FailedPreconditionError("data.train: another rank could not open the index");
  }
  data.train = *train;
  RETURN_IF_ERROR(CheckSameIndex(*data.train, comm, device));
  if (data.train->total_samples() == 0) {
    return absl::NotFoundError(absl::StrCat("data.train: no usable samples in ", config.data.train));
  }
  const int64_t batch = config.data.batch_size, world = comm.size();
  if (batch % world != 0) {
    return absl::InvalidArgumentError(absl::StrCat("data.batch_size: ", batch,
                                                   " does not split evenly over ", world, " ranks"));
  }
  StreamLoaderOptions o;
  o.order.seed = config.seed;
  o.order.shuffle_block_shards = config.data.shuffle_block_shards;
  o.order.source_weights = config.data.train_weights;
  o.global_batch = batch;
  o.slice_size = batch / world;
  o.slice_begin = comm.rank() * o.slice_size;
  o.image_size = config.model_config.vision.image_size;
  o.context_length = config.model_config.text.context_length;
  o.augment = config.data.augment;
  o.fast_decode = config.data.fast_decode;
  o.workers = workers;
  o.prefetch_steps = static_cast<int>(config.data.prefetch_steps);
  o.cache = data.shard_cache.get();
  if (device.is_cuda()) {
    o.allocate = [](size_t bytes) {
      torch::Tensor t = torch::empty({static_cast<int64_t>(bytes)},
                                     torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(true));
      void* data = t.data_ptr();
      return std::shared_ptr<void>(data, [t](void*) mutable { t.reset(); });
    };
  }
  auto loader = StreamLoader::Create(data.train, &tokenizer, o);
  if (!loader.ok()) return Annotate(loader.status(), "data");
  data.loader = std::move(*loader);
  for (int64_t epoch = 0; epoch < config.epochs; ++epoch) {
    ASSIGN_OR_RETURN(int64_t steps, data.loader->StepsInEpoch(epoch));
    if (steps == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data.batch_size: ", batch, " is larger than epoch ", epoch, "'s ",
          data.train->total_samples(), " usable training samples in ", config.data.train));
    }
    data.steps_per_epoch.push_back(steps);
    data.total_steps += steps;
  }
  if (config.max_steps > 0) data.total_steps = std::min(data.total_steps, config.max_steps);
  if (!config.data.val.empty()) {
    auto val = DatasetIndex::OpenOrBuild(config.data.val, cache, build);
    if (!val.ok()) return Annotate(val.status(), "data.val");
    data.val = *val;
  }
  return data;
}

std::map<std::string, double> DataCounts(const StreamLoader& loader, const DatasetIndex& index,
                                         Communicator& comm, const torch::Device& device) {
  const auto counts = loader.counts().ByName();
  torch::Tensor sums = torch::empty({static_cast<int64_t>(counts.size())}, torch::kFloat64);
  int64_t i = 0;
  for (const auto& [name, value] : counts) sums[i++] = static_cast<double>(value);
  HostAllReduce(sums, ReduceOp::kSum, comm, device);
  std::map<std::string, double> out;
  i = 0;
  for (const auto& [name, value] : counts) out["data/" + name] = sums[i++].item<double>();
  const IndexDropCounts dropped = index.dropped();
  out["data/index_incomplete_samples"] = static_cast<double>(dropped.incomplete_samples);
  out["data/index_duplicate_members"] = static_cast<double>(dropped.duplicate_members);
  out["data/index_truncated_shards"] = static_cast<double>(dropped.truncated_shards);
  out["data/index_unreadable_shards"] = static_cast<double>(dropped.unreadable_shards);
  return out;
}

}  // namespace clipscale
