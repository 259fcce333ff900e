#include "train/train_config.h"

#include "absl/strings/str_cat.h"
#include "core/config.h"
#include "core/status.h"

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
  auto model = LoadModelConfig(config.model, config.model_overrides);
  if (!model.ok()) return Annotate(model.status(), absl::StrCat(path, ": model"));
  config.model_config = *model;
  return config;
}

}  // namespace clipscale
