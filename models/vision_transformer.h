// OpenCLIP's VisionTransformer (open_clip/transformer.py) with the settings the
// CLIP ViT configs use: learnable positional embedding, class token ('tok')
// pooling, ln_pre, no layer scale, linear `proj`. Parameter names match
// OpenCLIP's `model.visual.state_dict()`.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>

#include "models/model_config.h"
#include "models/transformer.h"

namespace torch::nn {
class Conv2dImpl;
class LayerNormImpl;
}  // namespace torch::nn

namespace clipscale {

class VisionTransformerImpl : public torch::nn::Module {
 public:
  // Initialised as OpenCLIP does: class/positional embeddings and proj are
  // normal(std = width^-0.5); conv1 and the blocks keep PyTorch's defaults.
  VisionTransformerImpl(const VisionConfig& config, int embed_dim, bool quick_gelu);

  // [N, 3, S, S] normalised images -> [N, embed_dim] (not L2-normalised).
  // In training mode with patch_dropout > 0, keeps the class token and a random
  // int(P * (1 - patch_dropout)) of the P patch tokens per image (FLIP).
  torch::Tensor forward(const torch::Tensor& images);

  Transformer& transformer() { return transformer_; }

 private:
  torch::Tensor PatchDropout(const torch::Tensor& tokens) const;

  VisionConfig config_;
  std::shared_ptr<torch::nn::Conv2dImpl> conv1_;
  torch::Tensor class_embedding_, positional_embedding_, proj_;
  std::shared_ptr<torch::nn::LayerNormImpl> ln_pre_, ln_post_;
  Transformer transformer_{nullptr};
};
TORCH_MODULE(VisionTransformer);

}  // namespace clipscale
