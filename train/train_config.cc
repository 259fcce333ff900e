#include "train/train_config.h"

#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/config.h"
#include "core/status.h"
#include "train/data_parallel.h"
#include "train/precision.h"

namespace clipscale {
namespace {

// Upper bounds for the size keys: far above any real recipe, low enough that
// the products the trainer forms (bucket_mb << 20, batch x steps, tile x tile
// floats) stay inside int64 and a typo of a few digits is caught here rather
// than as an allocation failure or a silent overflow later.
constexpr int64_t kMaxBatch = int64_t{1} << 31;
constexpr int64_t kMaxBucketMb = int64_t{1} << 20;  // 1 TiB
constexpr int64_t kMaxLossTile = int64_t{1} << 16;  // a tile of 65,536² fp32 logits is 16 GiB
constexpr int64_t kMaxEpochs = 1'000'000;
constexpr int kMaxThreads = 4096;

// Range checks of the bound recipe; each message names the key and where its
// value came from ("recipe.yaml:7:14: distributed.bucket_mb: ...").
absl::Status CheckRanges(const TrainConfig& config, const YAML::Node& root,
                         const ConfigSource& source) {
  auto bad = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(ConfigKeyWhere(root, source, key), ": ", key, ": ", why));
  };
  auto range = [&](const std::string& key, int64_t value, int64_t lo,
                   int64_t hi) -> absl::Status {
    if (value >= lo && value <= hi) return absl::OkStatus();
    if (hi == INT64_MAX) return bad(key, absl::StrCat("is ", value, ", must be at least ", lo));
    return bad(key, absl::StrCat("is ", value, ", must be in [", lo, ", ", hi, "]"));
  };
  if (config.data.train.empty()) return bad("data.train", "is required (a shard folder or spec)");
  RETURN_IF_ERROR(range("data.batch_size", config.data.batch_size, 2, kMaxBatch));
  RETURN_IF_ERROR(range("data.micro_batch_size", config.data.micro_batch_size, 0, kMaxBatch));
  RETURN_IF_ERROR(range("epochs", config.epochs, 1, kMaxEpochs));
  RETURN_IF_ERROR(range("log_every", config.log_every, 1, INT64_MAX));
  RETURN_IF_ERROR(range("eval.every_steps", config.eval.every_steps, 0, INT64_MAX));
  RETURN_IF_ERROR(range("threads", config.threads, 0, kMaxThreads));
  RETURN_IF_ERROR(range("max_steps", config.max_steps, 0, INT64_MAX));
  RETURN_IF_ERROR(range("data.shuffle_block_shards", config.data.shuffle_block_shards, 1, 1 << 20));
  RETURN_IF_ERROR(range("data.workers", config.data.workers, 0, kMaxThreads));
  RETURN_IF_ERROR(range("data.prefetch_steps", config.data.prefetch_steps, 1, 64));
  RETURN_IF_ERROR(range("eval.batch_size", config.eval.batch_size, 1, kMaxBatch));
  if (!(config.data.shard_cache_gb > 0) || config.data.shard_cache_gb > 1e6) {
    return bad("data.shard_cache_gb", "must be a positive size in GB");
  }
  for (double w : config.data.train_weights) {
    if (!(w >= 0) || w > 1e6) return bad("data.train_weights", "weights must lie in [0, 1e6]");
  }
  if (config.output.empty()) return bad("output", "is required");
  if (config.device != "auto" && config.device != "cpu" && config.device != "cuda") {
    return bad("device", absl::StrCat("unknown device '", config.device, "' (auto, cpu, cuda)"));
  }
  RETURN_IF_ERROR(range("distributed.bucket_mb", config.distributed.bucket_mb, 1, kMaxBucketMb));
  RETURN_IF_ERROR(range("distributed.zero", config.distributed.zero, 0, 1));
  RETURN_IF_ERROR(range("distributed.loss_tile", config.distributed.loss_tile, 1, kMaxLossTile));
  const double timeout_s = config.distributed.nccl_timeout_s;
  if (!(timeout_s > 0) || !std::isfinite(timeout_s)) {
    return bad("distributed.nccl_timeout_s", "must be a positive number of seconds");
  }
  RETURN_IF_ERROR(range("checkpoint.every_steps", config.checkpoint.every_steps, 0, INT64_MAX));
  RETURN_IF_ERROR(range("checkpoint.keep_every", config.checkpoint.keep_every, 0, INT64_MAX));
  if (config.checkpoint.keep == 1 || config.checkpoint.keep < 0) {
    return bad("checkpoint.keep", absl::StrCat("is ", config.checkpoint.keep,
                                               ", must be 0 (keep all) or at least 2 (the newest "
                                               "may be the one being written when a job dies)"));
  }
  if (!(config.checkpoint.every_minutes >= 0) || !std::isfinite(config.checkpoint.every_minutes)) {
    return bad("checkpoint.every_minutes", "must be a non-negative number of minutes");
  }
  RETURN_IF_ERROR(range("max_skipped_steps", config.max_skipped_steps, 0, INT64_MAX));
  const LaunchConfig& launch = config.launch;
  RETURN_IF_ERROR(range("launch.max_restarts", launch.max_restarts, 0, 1000000));
  RETURN_IF_ERROR(range("launch.heartbeat_misses", launch.heartbeat_misses, 1, 1000000));
  RETURN_IF_ERROR(range("launch.exclude_after", launch.exclude_after, 0, 1000000));
  const std::pair<const char*, double> seconds[] = {
      {"launch.backoff_s", launch.backoff_s},
      {"launch.backoff_max_s", launch.backoff_max_s},
      {"launch.heartbeat_s", launch.heartbeat_s},
      {"launch.hang_min_s", launch.hang_min_s},
      {"launch.hang_factor", launch.hang_factor},
      {"launch.startup_timeout_s", launch.startup_timeout_s},
      {"launch.orphan_s", launch.orphan_s}};
  for (const auto& [key, value] : seconds) {
    if (!(value >= 0) || !std::isfinite(value)) return bad(key, "must be a non-negative number");
  }
  if (!(launch.heartbeat_s > 0)) return bad("launch.heartbeat_s", "must be positive");
  if (launch.listen.find(':') == std::string::npos) {
    return bad("launch.listen", "must be HOST:PORT (port 0: any free port)");
  }
  auto loss = ParseLossKind(config.loss);
  if (!loss.ok()) return bad("loss", std::string(loss.status().message()));
  auto precision = ParsePrecision(config.precision);
  if (!precision.ok()) return bad("precision", std::string(precision.status().message()));
  if (const absl::Status scaler = ValidateGradScaler(config.grad_scaler); !scaler.ok()) {
    // Its messages begin with the key: "grad_scaler.<key> must ...".
    const std::string message(scaler.message());
    const std::string key = message.substr(0, message.find(' '));
    return bad(key, message.substr(std::min(message.size(), key.size() + 1)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path,
                                            const std::vector<std::string>& overrides) {
  // LoadConfigFile's steps, keeping the tree so that messages can give lines.
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  ConfigSource source{path, {}};
  RETURN_IF_ERROR(ApplyOverrides(root, overrides, &source));
  ASSIGN_OR_RETURN(TrainConfig config, BindConfig<TrainConfig>(root, source));
  RETURN_IF_ERROR(CheckRanges(config, root, source));
  auto model = LoadModelConfig(config.model, config.model_overrides);
  if (!model.ok()) {
    return Annotate(model.status(), absl::StrCat(ConfigKeyWhere(root, source, "model"), ": model"));
  }
  config.model_config = *model;
  if (*ParseLossKind(config.loss) == LossKind::kSigLip && !config.model_config.init_logit_bias) {
    // As open_clip_train/main.py does for --siglip.
    config.model_config.init_logit_scale = std::log(10.0);
    config.model_config.init_logit_bias = -10.0;
  }
  return config;
}

}  // namespace clipscale
