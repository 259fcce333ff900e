#include "models/vision_transformer.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>

#include <algorithm>
#include <cmath>

#include "core/status.h"

namespace clipscale {

VisionTransformerImpl::VisionTransformerImpl(const VisionConfig& config, int embed_dim,
                                             bool quick_gelu)
    : config_(config) {
  CS_CHECK_MSG(!config.is_resnet() && config.layers.size() == 1,
            "VisionTransformer needs one depth in vision.layers");
  const int64_t width = config.width;
  const int64_t grid = config.image_size / config.patch_size;
  const double scale = std::pow(static_cast<double>(width), -0.5);

  conv1_ = register_module("conv1", std::make_shared<torch::nn::Conv2dImpl>(
                                        torch::nn::Conv2dOptions(3, width, config.patch_size)
                                            .stride(config.patch_size)
                                            .bias(false)));
  class_embedding_ = register_parameter("class_embedding", scale * torch::randn({width}));
  positional_embedding_ =
      register_parameter("positional_embedding", scale * torch::randn({grid * grid + 1, width}));
  const auto ln = torch::nn::LayerNormOptions({width}).eps(1e-5);
  ln_pre_ = register_module("ln_pre", std::make_shared<torch::nn::LayerNormImpl>(ln));
  transformer_ = register_module(
      "transformer", Transformer(TransformerOptions(width, config.layers[0], config.heads())
                                     .mlp_ratio(config.mlp_ratio)
                                     .quick_gelu(quick_gelu)));
  ln_post_ = register_module("ln_post", std::make_shared<torch::nn::LayerNormImpl>(ln));
  proj_ = register_parameter("proj", scale * torch::randn({width, embed_dim}));
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& images) {
  CS_CHECK_MSG(images.dim() == 4 && images.size(2) == config_.image_size &&
                images.size(3) == config_.image_size,
            "expected [N, 3, ", config_.image_size, ", ", config_.image_size, "] images, got ",
            c10::str(images.sizes()));
  auto x = conv1_->forward(images);  // [N, width, grid, grid]
  x = x.flatten(2).transpose(1, 2);  // [N, grid^2, width]
  auto cls = class_embedding_.to(x.dtype()).view({1, 1, -1}).expand({x.size(0), 1, -1});
  x = at::cat({cls, x}, 1) + positional_embedding_.to(x.dtype());
  x = PatchDropout(x);
  x = ln_pre_->forward(x);
  x = transformer_->forward(x);
  // OpenCLIP normalises every token with ln_post and then keeps the class token;
  // LayerNorm is per token, so normalising only that token gives the same numbers.
  auto pooled = ln_post_->forward(x.select(1, 0));
  return at::matmul(pooled, proj_);
}

torch::Tensor VisionTransformerImpl::PatchDropout(const torch::Tensor& tokens) const {
  if (!is_training() || config_.patch_dropout <= 0.0) return tokens;
  auto cls = tokens.narrow(1, 0, 1);
  auto patches = tokens.narrow(1, 1, tokens.size(1) - 1);
  const int64_t batch = patches.size(0), num = patches.size(1);
  const auto keep = std::max<int64_t>(
      1, static_cast<int64_t>(static_cast<double>(num) * (1.0 - config_.patch_dropout)));
  // Drawn on the CPU generator, as OpenCLIP's torch.randn(batch, num_tokens) is,
  // so a seeded run drops the same patches in both.
  auto order = std::get<1>(at::randn({batch, num}).topk(keep, -1)).to(tokens.device());
  auto index = order.unsqueeze(-1).expand({batch, keep, patches.size(2)});
  return at::cat({cls, patches.gather(1, index)}, 1);
}

}  // namespace clipscale
