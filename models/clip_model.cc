#include "models/clip_model.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>
#include <torch/utils.h>

#include <cmath>
#include <string>

#include "core/status.h"
#include "models/modified_resnet.h"
#include "models/vision_transformer.h"

namespace clipscale {
namespace {

// F.normalize(x, dim=-1): x / max(||x||, 1e-12), written with the same ops.
torch::Tensor L2Normalize(const torch::Tensor& x) {
  return x / x.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12).expand_as(x);
}

}  // namespace

ClipModelImpl::ClipModelImpl(const ModelConfig& config) : config_(config) {
  CS_CHECK_OK(ValidateModelConfig(config));
  const VisionConfig& v = config.vision;
  if (v.is_resnet()) {
    resnet_ = std::make_shared<ModifiedResNetImpl>(v, config.embed_dim);
    visual_ = register_module("visual", resnet_);
  } else {
    vit_ = std::make_shared<VisionTransformerImpl>(v, config.embed_dim, config.quick_gelu);
    visual_ = register_module("visual", vit_);
  }

  // Registration follows OpenCLIP's attribute order; the causal mask is not
  // registered (OpenCLIP's attn_mask is persistent=False): attention applies it
  // implicitly.
  const TextConfig& t = config.text;
  transformer_ =
      register_module("transformer", Transformer(TransformerOptions(t.width, t.layers, t.heads)
                                                     .mlp_ratio(t.mlp_ratio)
                                                     .quick_gelu(config.quick_gelu)));
  token_embedding_ = register_module(
      "token_embedding", std::make_shared<torch::nn::EmbeddingImpl>(t.vocab_size, t.width));
  positional_embedding_ =
      register_parameter("positional_embedding", torch::empty({t.context_length, t.width}));
  ln_final_ = register_module("ln_final", std::make_shared<torch::nn::LayerNormImpl>(
                                              torch::nn::LayerNormOptions({t.width}).eps(1e-5)));
  text_projection_ =
      register_parameter("text_projection", torch::empty({t.width, config.embed_dim}));
  // A 0-dim tensor, as OpenCLIP's torch.ones([]) * init_logit_scale.
  logit_scale_ = register_parameter("logit_scale", torch::ones({}) * config.init_logit_scale);
  if (config.init_logit_bias) {
    logit_bias_ = register_parameter("logit_bias", torch::ones({}) * *config.init_logit_bias);
  }
  InitTextParameters();
}

// OpenCLIP's TextTransformer.init_parameters.
void ClipModelImpl::InitTextParameters() {
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(token_embedding_->weight, 0.0, 0.02);
  torch::nn::init::normal_(positional_embedding_, 0.0, 0.01);
  transformer_->InitTextParameters();
  torch::nn::init::normal_(text_projection_, 0.0,
                           std::pow(static_cast<double>(config_.text.width), -0.5));
}

torch::Tensor ClipModelImpl::EncodeImage(const torch::Tensor& images, bool normalize) {
  auto features = vit_ ? vit_->forward(images) : resnet_->forward(images);
  return normalize ? L2Normalize(features) : features;
}

torch::Tensor ClipModelImpl::EncodeText(const torch::Tensor& tokens, bool normalize) {
  const int64_t context = config_.text.context_length;
  CS_CHECK_MSG(tokens.dim() == 2 && tokens.size(1) <= context, "expected [N, L<=", context,
            "] tokens, got ", c10::str(tokens.sizes()));
  // Positions attend only backwards, so a batch shorter than context_length
  // gives the features (up to rounding) its first L positions would in a full one.
  const int64_t length = tokens.size(1);
  const auto dtype = positional_embedding_.scalar_type();
  auto x = token_embedding_->forward(tokens).to(dtype) + positional_embedding_.narrow(0, 0, length);
  x = transformer_->forward(x, /*causal=*/true);
  // Pool at the end-of-text token (the largest id) before ln_final; LayerNorm is
  // per token, so this equals OpenCLIP's ln_final-then-pool.
  auto rows = at::arange(tokens.size(0), tokens.options().dtype(at::kLong));
  auto pooled = ln_final_->forward(x.index({rows, tokens.argmax(-1)}));
  auto features = at::matmul(pooled, text_projection_);
  return normalize ? L2Normalize(features) : features;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> ClipModelImpl::forward(
    const torch::Tensor& images, const torch::Tensor& tokens) {
  return {EncodeImage(images), EncodeText(tokens), logit_scale_.exp()};
}

void ClipModelImpl::SetGradCheckpointing(bool enabled) {
  transformer_->set_grad_checkpointing(enabled);
  if (vit_) vit_->transformer()->set_grad_checkpointing(enabled);
}

}  // namespace clipscale
