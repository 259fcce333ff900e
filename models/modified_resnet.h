// OpenCLIP's ModifiedResNet (open_clip/modified_resnet.py), the CLIP RN50/RN101
// image tower: a 3-convolution stem with an average pool, anti-aliased
// Bottleneck stages (stride by AvgPool2d) and an attention-pooling head.
// Parameter names match OpenCLIP's `model.visual.state_dict()`.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "models/model_config.h"

namespace clipscale {

// Residual block with expansion 4; when it strides or widens, the shortcut is
// Sequential(AvgPool2d, conv1x1, BatchNorm) named "downsample.{0,1,2}".
class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

  // Zeroes bn3's scale so the block starts as its shortcut (OpenCLIP's init).
  void ZeroInitLastNorm();

 private:
  int64_t stride_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(Bottleneck);

// Multi-head attention of the spatial mean token over all positions (plus itself);
// returns the mean token's output projected to `output_dim`.
class AttentionPool2dImpl : public torch::nn::Module {
 public:
  AttentionPool2dImpl(int64_t spacial_dim, int64_t embed_dim, int64_t num_heads,
                      int64_t output_dim);
  torch::Tensor forward(const torch::Tensor& x);  // [N, C, H, W] -> [N, output_dim]

  // OpenCLIP's ModifiedResNet.init_parameters: normal(std = in_features^-0.5) for
  // the four projections.
  void InitParameters();

 private:
  int64_t num_heads_;
  torch::Tensor positional_embedding_;
  torch::nn::Linear k_proj_{nullptr}, q_proj_{nullptr}, v_proj_{nullptr}, c_proj_{nullptr};
};
TORCH_MODULE(AttentionPool2d);

class ModifiedResNetImpl : public torch::nn::Module {
 public:
  // config: layers = the 4 stage depths, width = stem width, head_width,
  // image_size (divisible by 32). embed_dim: output size.
  ModifiedResNetImpl(const VisionConfig& config, int embed_dim);

  // [N, 3, H, W] normalised images -> [N, embed_dim].
  torch::Tensor forward(const torch::Tensor& images);

 private:
  torch::nn::Sequential MakeLayer(int64_t planes, int64_t blocks, int64_t stride);
  void InitParameters();

  int64_t inplanes_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::Sequential layer1_{nullptr}, layer2_{nullptr}, layer3_{nullptr}, layer4_{nullptr};
  AttentionPool2d attnpool_{nullptr};
};
TORCH_MODULE(ModifiedResNet);

}  // namespace clipscale
