// OpenCLIP's `Transformer` (open_clip/transformer.py): a stack of pre-LayerNorm
// residual attention blocks shared by the image and text towers. Parameter names
// match OpenCLIP's state dict: resblocks.N.{ln_1, attn.in_proj_weight,
// attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}.
#pragma once

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace clipscale {

struct TransformerOptions {
  TransformerOptions(int64_t width, int64_t layers, int64_t heads)
      : width_(width), layers_(layers), heads_(heads) {}
  TORCH_ARG(int64_t, width);
  TORCH_ARG(int64_t, layers);
  TORCH_ARG(int64_t, heads);
  // MLP hidden size = int(width * mlp_ratio), as OpenCLIP truncates it.
  TORCH_ARG(double, mlp_ratio) = 4.0;
  // OpenAI's x * sigmoid(1.702 x) instead of exact (erf) GELU.
  TORCH_ARG(bool, quick_gelu) = false;
};

class TransformerImpl : public torch::nn::Module {
 public:
  // Blocks start with PyTorch's defaults for nn.MultiheadAttention / nn.Linear /
  // nn.LayerNorm, which is what OpenCLIP's vision tower keeps.
  explicit TransformerImpl(const TransformerOptions& options);

  // x: [N, L, width] -> [N, L, width]. causal: position i attends to 0..i only
  // (OpenCLIP's text attn_mask, an upper-triangular -inf mask).
  torch::Tensor forward(const torch::Tensor& x, bool causal = false);

  // OpenCLIP's TextTransformer.init_parameters for the blocks: normal weights with
  // attn_std = width^-0.5, proj_std = width^-0.5 * (2 layers)^-0.5,
  // fc_std = (2 width)^-0.5; biases keep their defaults.
  void InitTextParameters();

  const TransformerOptions& options() const { return options_; }
  // The block container, e.g. for locking all but the last few blocks.
  torch::nn::ModuleList& resblocks() { return resblocks_; }

  // Recompute each block in backward instead of keeping its activations
  // (OpenCLIP's --grad-checkpointing); gradients are unchanged.
  void set_grad_checkpointing(bool enabled) { grad_checkpointing_ = enabled; }

 private:
  TransformerOptions options_;
  torch::nn::ModuleList resblocks_{nullptr};
  bool grad_checkpointing_ = false;
};
TORCH_MODULE(Transformer);

}  // namespace clipscale
