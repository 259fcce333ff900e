// What `embed`, `zeroshot` and later `eval` share: a model from a config name
// and a weights file, and images turned into a batch tensor.
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "models/clip_model.h"

namespace clipscale::launcher {

struct ModelOptions {
  std::string model = "tiny";        // config name or YAML path
  std::string weights;               // safetensors with OpenCLIP names
  bool random_init = false;          // allow running without weights
  std::vector<std::string> overrides;  // --set vision.width=...
};

// Builds the model in eval mode and loads its weights (strictly).
absl::StatusOr<ClipModel> LoadModel(const ModelOptions& options);

// Decodes and preprocesses images with OpenCLIP's eval transform:
// [n, 3, size, size] float32.
absl::StatusOr<torch::Tensor> LoadImageBatch(const std::vector<std::string>& paths, int size);

}  // namespace clipscale::launcher
