#include "launcher/model_loading.h"

#include <torch/torch.h>

#include "core/logging.h"
#include "core/status.h"
#include "data/image.h"
#include "data/transforms.h"
#include "models/weights_io.h"

namespace clipscale::launcher {

absl::StatusOr<ClipModel> LoadModel(const ModelOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(options.model, options.overrides));
  ClipModel model(config);
  if (!options.weights.empty()) {
    RETURN_IF_ERROR(LoadWeights(*model, options.weights));
  } else if (!options.random_init) {
    return absl::InvalidArgumentError(
        "--weights is required (or pass --random-init to run an untrained model)");
  } else {
    LogWarning("no --weights: using a randomly initialised ", options.model, " model");
  }
  model->eval();
  return model;
}

absl::StatusOr<torch::Tensor> LoadImageBatch(const std::vector<std::string>& paths, int size) {
  torch::Tensor batch = torch::empty({static_cast<int64_t>(paths.size()), 3, size, size});
  for (size_t i = 0; i < paths.size(); ++i) {
    ASSIGN_OR_RETURN(Image image, ReadImageFile(paths[i]));
    std::vector<float> pixels = EvalTransform(image, size);
    std::memcpy(batch[i].data_ptr<float>(), pixels.data(), pixels.size() * sizeof(float));
  }
  return batch;
}

}  // namespace clipscale::launcher
