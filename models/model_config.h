// Model shapes, mirroring OpenCLIP's model JSON (CLIPVisionCfg / CLIPTextCfg).
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

struct VisionConfig {
  int image_size = 224;
  // One entry: ViT depth. Four entries: ModifiedResNet blocks per stage.
  std::vector<int> layers = {12};
  int width = 768;
  int head_width = 64;
  double mlp_ratio = 4.0;
  int patch_size = 16;         // ViT only
  double patch_dropout = 0.0;  // FLIP: fraction of patch tokens dropped in training

  bool is_resnet() const { return layers.size() == 4; }
  // OpenCLIP: ViT heads = width / head_width; ResNet heads = width * 32 / head_width.
  int heads() const { return is_resnet() ? width * 32 / head_width : width / head_width; }

  template <class V>
  void Visit(V& v) {
    v("image_size", image_size);
    v("layers", layers);
    v("width", width);
    v("head_width", head_width);
    v("mlp_ratio", mlp_ratio);
    v("patch_size", patch_size);
    v("patch_dropout", patch_dropout);
  }
};

struct TextConfig {
  int context_length = 77;
  int vocab_size = 49408;
  int width = 512;
  int heads = 8;
  int layers = 12;
  double mlp_ratio = 4.0;

  template <class V>
  void Visit(V& v) {
    v("context_length", context_length);
    v("vocab_size", vocab_size);
    v("width", width);
    v("heads", heads);
    v("layers", layers);
    v("mlp_ratio", mlp_ratio);
  }
};

struct ModelConfig {
  int embed_dim = 512;
  bool quick_gelu = false;  // OpenAI's x*sigmoid(1.702x) instead of exact GELU
  double init_logit_scale = std::log(1.0 / 0.07);
  // Set: the model has a learnable `logit_bias` (SigLIP; OpenCLIP's init_logit_bias).
  std::optional<double> init_logit_bias;
  VisionConfig vision;
  TextConfig text;

  template <class V>
  void Visit(V& v) {
    v("embed_dim", embed_dim);
    v("quick_gelu", quick_gelu);
    v("init_logit_scale", init_logit_scale);
    v("init_logit_bias", init_logit_bias);
    v("vision", vision);
    v("text", text);
  }
};

// Checks shapes that would fail deep inside the model (patch size dividing the
// image, widths dividing into heads); names the offending key.
absl::Status ValidateModelConfig(const ModelConfig& config);

// `name_or_path`: a YAML file, or a model name such as "ViT-B-32" found as
// configs/models/<name>.yaml in the data search path. Overrides: "vision.width=128".
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& name_or_path,
                                            const std::vector<std::string>& overrides = {});

}  // namespace clipscale
