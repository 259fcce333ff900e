#include "models/model_config.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/config.h"
#include "core/paths.h"
#include "core/status.h"

namespace clipscale {

absl::Status ValidateModelConfig(const ModelConfig& c) {
  auto bad = [](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": ", why));
  };
  if (c.embed_dim <= 0) return bad("embed_dim", "must be positive");
  const VisionConfig& v = c.vision;
  if (v.layers.size() != 1 && v.layers.size() != 4) {
    return bad("vision.layers", "one depth (ViT) or four stage depths (ModifiedResNet)");
  }
  for (int n : v.layers) {
    if (n <= 0) return bad("vision.layers", "depths must be positive");
  }
  if (v.width <= 0 || v.head_width <= 0) return bad("vision.width", "must be positive");
  if (v.is_resnet()) {
    if (v.image_size % 32 != 0) {
      return bad("vision.image_size", absl::StrCat(v.image_size, " is not divisible by 32 (ResNet stride)"));
    }
    if ((v.width * 32) % v.head_width != 0) return bad("vision.head_width", "must divide width*32");
  } else {
    if (v.patch_size <= 0 || v.image_size % v.patch_size != 0) {
      return bad("vision.image_size", absl::StrCat(v.image_size, " is not divisible by patch_size ",
                                                   v.patch_size));
    }
    if (v.width % v.head_width != 0) {
      return bad("vision.head_width", absl::StrCat(v.head_width, " does not divide width ", v.width));
    }
  }
  if (v.patch_dropout < 0 || v.patch_dropout >= 1) return bad("vision.patch_dropout", "must be in [0, 1)");
  const TextConfig& t = c.text;
  if (t.context_length < 3) return bad("text.context_length", "must be at least 3");
  if (t.vocab_size <= 0 || t.layers <= 0) return bad("text", "vocab_size and layers must be positive");
  if (t.heads <= 0 || t.width % t.heads != 0) {
    return bad("text.heads", absl::StrCat(t.heads, " does not divide width ", t.width));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& name_or_path,
                                            const std::vector<std::string>& overrides) {
  std::string path = name_or_path;
  std::error_code error;  // an unreadable path is "not a file" here; opening it reports why
  if (!std::filesystem::exists(path, error)) {
    auto found = FindDataFile(absl::StrCat("configs/models/", name_or_path, ".yaml"));
    if (!found.ok()) {
      return absl::NotFoundError(absl::StrCat("unknown model '", name_or_path,
                                              "': no such file, and ", found.status().message()));
    }
    path = *found;
  }
  ASSIGN_OR_RETURN(ModelConfig config, LoadConfigFile<ModelConfig>(path, overrides));
  RETURN_IF_ERROR(Annotate(ValidateModelConfig(config), path));
  return config;
}

}  // namespace clipscale
