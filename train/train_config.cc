#include "train/train_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/config.h"
#include "core/status.h"
#include "train/data_parallel.h"

namespace clipscale {

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path,
                                            const std::vector<std::string>& overrides) {
  ASSIGN_OR_RETURN(TrainConfig config, LoadConfigFile<TrainConfig>(path, overrides));
  auto bad = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, ": ", why));
  };
  if (config.data.train.empty()) return bad("data.train", "is required (a shard folder or spec)");
  if (config.data.batch_size < 2) return bad("data.batch_size", "must be at least 2");
  if (config.epochs < 1) return bad("epochs", "must be at least 1");
  if (config.log_every < 1) return bad("log_every", "must be at least 1");
  if (config.eval.every_steps < 0) return bad("eval.every_steps", "must not be negative");
  if (config.output.empty()) return bad("output", "is required");
  if (config.data.micro_batch_size < 0) return bad("data.micro_batch_size", "must not be negative");
  if (config.device != "auto" && config.device != "cpu" && config.device != "cuda") {
    return bad("device", absl::StrCat("unknown device '", config.device, "' (auto, cpu, cuda)"));
  }
  if (config.distributed.bucket_mb < 1) return bad("distributed.bucket_mb", "must be at least 1");
  if (config.distributed.loss_tile < 1) return bad("distributed.loss_tile", "must be at least 1");
  if (!(config.distributed.nccl_timeout_s > 0)) {
    return bad("distributed.nccl_timeout_s", "must be positive");
  }
  auto loss = ParseLossKind(config.loss);
  if (!loss.ok()) return bad("loss", std::string(loss.status().message()));
  auto model = LoadModelConfig(config.model, config.model_overrides);
  if (!model.ok()) return Annotate(model.status(), absl::StrCat(path, ": model"));
  config.model_config = *model;
  if (*loss == LossKind::kSigLip && !config.model_config.init_logit_bias) {
    // As open_clip_train/main.py does for --siglip.
    config.model_config.init_logit_scale = std::log(10.0);
    config.model_config.init_logit_bias = -10.0;
  }
  return config;
}

}  // namespace clipscale
