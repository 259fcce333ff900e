#include "models/modified_resnet.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include <cmath>

#include "core/status.h"

namespace clipscale {
namespace {

constexpr int64_t kExpansion = 4;  // Bottleneck output channels = planes * 4

torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

}  // namespace

BottleneckImpl::BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride) : stride_(stride) {
  // Registration order follows OpenCLIP so that, from the same seed, the default
  // initialisers draw the same random numbers in the same order.
  conv1_ = register_module("conv1", Conv(inplanes, planes, 1));
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(planes));
  conv2_ = register_module("conv2", Conv(planes, planes, 3));
  bn2_ = register_module("bn2", torch::nn::BatchNorm2d(planes));
  conv3_ = register_module("conv3", Conv(planes, planes * kExpansion, 1));
  bn3_ = register_module("bn3", torch::nn::BatchNorm2d(planes * kExpansion));
  if (stride > 1 || inplanes != planes * kExpansion) {
    // OpenCLIP names the pool "-1" so that the convolution and norm keep the
    // torchvision-style keys downsample.0 / downsample.1.
    downsample_ = torch::nn::Sequential();
    downsample_->push_back("-1", torch::nn::AvgPool2d(torch::nn::AvgPool2dOptions(stride)));
    downsample_->push_back("0", Conv(inplanes, planes * kExpansion, 1));
    downsample_->push_back("1", torch::nn::BatchNorm2d(planes * kExpansion));
    register_module("downsample", downsample_);
  }
}

void BottleneckImpl::ZeroInitLastNorm() {
  torch::NoGradGuard no_grad;
  bn3_->weight.zero_();
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  // In-place ReLUs, as OpenCLIP's ReLU(inplace=True): batch norm's backward does not
  // need its output, so overwriting it saves one activation per layer.
  torch::Tensor out = bn1_(conv1_(x)).relu_();
  out = bn2_(conv2_(out)).relu_();
  // Anti-aliased striding: all convolutions have stride 1, an average pool strides.
  if (stride_ > 1) out = at::avg_pool2d(out, {stride_, stride_});
  out = bn3_(conv3_(out));
  out += downsample_ ? downsample_->forward(x) : x;
  return at::relu_(out);
}

AttentionPool2dImpl::AttentionPool2dImpl(int64_t spacial_dim, int64_t embed_dim, int64_t num_heads,
                                         int64_t output_dim)
    : num_heads_(num_heads) {
  CS_CHECK_MSG(embed_dim % num_heads == 0, "attention pool width ", embed_dim, " is not divisible by ",
            num_heads, " heads");
  positional_embedding_ = register_parameter("positional_embedding",
                                             at::randn({spacial_dim * spacial_dim + 1, embed_dim}) /
                                                 std::pow(static_cast<double>(embed_dim), 0.5));
  k_proj_ = register_module("k_proj", torch::nn::Linear(embed_dim, embed_dim));
  q_proj_ = register_module("q_proj", torch::nn::Linear(embed_dim, embed_dim));
  v_proj_ = register_module("v_proj", torch::nn::Linear(embed_dim, embed_dim));
  c_proj_ = register_module("c_proj", torch::nn::Linear(embed_dim, output_dim));
}

void AttentionPool2dImpl::InitParameters() {
  torch::NoGradGuard no_grad;
  // Python's `in_features ** -0.5`, spelled the same way so the value is identical.
  const double std = std::pow(static_cast<double>(c_proj_->options.in_features()), -0.5);
  for (torch::nn::Linear& proj :
       {std::ref(q_proj_), std::ref(k_proj_), std::ref(v_proj_), std::ref(c_proj_)}) {
    proj->weight.normal_(0.0, std);
  }
}

torch::Tensor AttentionPool2dImpl::forward(const torch::Tensor& x) {
  const int64_t n = x.size(0), channels = x.size(1), head_dim = channels / num_heads_;
  torch::Tensor tokens = x.flatten(2).transpose(1, 2);              // [N, HW, C]
  tokens = at::cat({tokens.mean(1, /*keepdim=*/true), tokens}, 1);  // [N, 1+HW, C]
  tokens = tokens + positional_embedding_.to(tokens.scalar_type());
  auto split_heads = [&](const torch::Tensor& t) {  // [N, L, C] -> [N, heads, L, head_dim]
    return t.view({n, t.size(1), num_heads_, head_dim}).transpose(1, 2);
  };
  // OpenCLIP attends with every token and keeps output 0; only the mean token's
  // query contributes to that output, so it is the only one computed.
  const torch::Tensor q = split_heads(q_proj_(tokens.narrow(1, 0, 1)));
  const torch::Tensor k = split_heads(k_proj_(tokens));
  const torch::Tensor v = split_heads(v_proj_(tokens));
  const torch::Tensor out = at::scaled_dot_product_attention(q, k, v);  // [N, heads, 1, d]
  return c_proj_(out.transpose(1, 2).reshape({n, channels}));
}

ModifiedResNetImpl::ModifiedResNetImpl(const VisionConfig& config, int embed_dim)
    : inplanes_(config.width) {
  CS_CHECK_MSG(config.is_resnet(), "ModifiedResNet needs 4 stage depths in vision.layers");
  CS_CHECK_MSG(config.image_size % 32 == 0, "ModifiedResNet image_size ", config.image_size,
            " is not a multiple of 32");
  const int64_t width = config.width;
  conv1_ = register_module("conv1", Conv(3, width / 2, 3, /*stride=*/2));
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(width / 2));
  conv2_ = register_module("conv2", Conv(width / 2, width / 2, 3));
  bn2_ = register_module("bn2", torch::nn::BatchNorm2d(width / 2));
  conv3_ = register_module("conv3", Conv(width / 2, width, 3));
  bn3_ = register_module("bn3", torch::nn::BatchNorm2d(width));
  layer1_ = register_module("layer1", MakeLayer(width, config.layers[0], 1));
  layer2_ = register_module("layer2", MakeLayer(width * 2, config.layers[1], 2));
  layer3_ = register_module("layer3", MakeLayer(width * 4, config.layers[2], 2));
  layer4_ = register_module("layer4", MakeLayer(width * 8, config.layers[3], 2));
  attnpool_ = register_module(
      "attnpool", AttentionPool2d(config.image_size / 32, width * 32, config.heads(), embed_dim));
  InitParameters();
}

torch::nn::Sequential ModifiedResNetImpl::MakeLayer(int64_t planes, int64_t blocks,
                                                    int64_t stride) {
  torch::nn::Sequential layer;
  layer->push_back(Bottleneck(inplanes_, planes, stride));
  inplanes_ = planes * kExpansion;
  for (int64_t i = 1; i < blocks; ++i) layer->push_back(Bottleneck(inplanes_, planes, 1));
  return layer;
}

void ModifiedResNetImpl::InitParameters() {
  attnpool_->InitParameters();
  for (const torch::nn::Sequential& layer : {layer1_, layer2_, layer3_, layer4_}) {
    for (const auto& block : layer->children()) block->as<BottleneckImpl>()->ZeroInitLastNorm();
  }
}

torch::Tensor ModifiedResNetImpl::forward(const torch::Tensor& images) {
  torch::Tensor x = bn1_(conv1_(images)).relu_();
  x = bn2_(conv2_(x)).relu_();
  x = bn3_(conv3_(x)).relu_();
  x = at::avg_pool2d(x, {2, 2});
  x = layer4_->forward(layer3_->forward(layer2_->forward(layer1_->forward(x))));
  return attnpool_->forward(x);
}

}  // namespace clipscale
