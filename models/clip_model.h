// OpenCLIP's `CLIP` (open_clip/model.py): an image tower (VisionTransformer or
// ModifiedResNet) under "visual", and the text transformer held directly, as
// OpenCLIP holds it (token_embedding, positional_embedding, transformer,
// ln_final, text_projection), plus logit_scale. StateDict(model) has exactly the
// keys, shapes and dtypes of OpenCLIP's `model.state_dict()`, so weights move
// between the two with weights_io's SaveWeights / LoadWeights.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <tuple>

#include "models/model_config.h"
#include "models/transformer.h"

namespace torch::nn {
class EmbeddingImpl;
class LayerNormImpl;
}  // namespace torch::nn

namespace clipscale {

class VisionTransformerImpl;
class ModifiedResNetImpl;

class ClipModelImpl : public torch::nn::Module {
 public:
  // Randomly initialised the way OpenCLIP's CLIP(**cfg) is (see the towers);
  // logit_scale = config.init_logit_scale. CHECK-fails on a config that
  // ValidateModelConfig rejects.
  explicit ClipModelImpl(const ModelConfig& config);

  // [N, 3, S, S] float -> [N, embed_dim], L2-normalised unless normalize=false.
  torch::Tensor EncodeImage(const torch::Tensor& images, bool normalize = true);
  // [N, L] int64 token ids, L <= context_length, each row holding its end-of-text
  // token as the largest id (argmax pooling) -> [N, embed_dim].
  torch::Tensor EncodeText(const torch::Tensor& tokens, bool normalize = true);

  // (normalised image features, normalised text features, logit_scale.exp()).
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> forward(const torch::Tensor& images,
                                                                  const torch::Tensor& tokens);

  const ModelConfig& config() const { return config_; }
  // The image tower, e.g. to lock it (LiT).
  torch::nn::Module& visual() { return *visual_; }
  // The text blocks, e.g. to lock all but the last few.
  Transformer& transformer() { return transformer_; }
  // Gradient checkpointing of the transformer blocks of both towers (the
  // ModifiedResNet tower has none: OpenCLIP ignores the flag there too).
  void SetGradCheckpointing(bool enabled);
  // The learnable log temperature (a 0-dim parameter); the trainer clamps it.
  torch::Tensor& logit_scale() { return logit_scale_; }
  // The learnable SigLIP bias (0-dim), or an undefined tensor when the config
  // has no init_logit_bias.
  torch::Tensor& logit_bias() { return logit_bias_; }

 private:
  void InitTextParameters();

  ModelConfig config_;
  std::shared_ptr<torch::nn::Module> visual_;
  std::shared_ptr<VisionTransformerImpl> vit_;  // set when the tower is a ViT
  std::shared_ptr<ModifiedResNetImpl> resnet_;  // set when it is a ModifiedResNet
  Transformer transformer_{nullptr};
  std::shared_ptr<torch::nn::EmbeddingImpl> token_embedding_;
  std::shared_ptr<torch::nn::LayerNormImpl> ln_final_;
  torch::Tensor positional_embedding_, text_projection_, logit_scale_, logit_bias_;
};
TORCH_MODULE(ClipModel);

}  // namespace clipscale
