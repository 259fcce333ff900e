#include "models/transformer.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>

#include "core/status.h"
#include "models/checkpoint.h"

namespace clipscale {
namespace {

// nn.MultiheadAttention's parameters (packed in_proj_weight/in_proj_bias and an
// out_proj Linear) with the attention itself done by scaled_dot_product_attention,
// which picks a fused kernel and never materialises the causal mask.
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t width, int64_t heads) : heads_(heads) {
    CS_CHECK_MSG(width % heads == 0, "width ", width, " is not divisible by heads ", heads);
    // MultiheadAttention._reset_parameters: xavier_uniform_ weight, zero biases;
    // out_proj.weight keeps nn.Linear's kaiming-uniform default.
    in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * width, width}));
    torch::nn::init::xavier_uniform_(in_proj_weight);
    in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * width}));
    out_proj = register_module("out_proj", torch::nn::Linear(width, width));
    torch::nn::init::zeros_(out_proj->bias);
  }

  torch::Tensor forward(const torch::Tensor& x, bool causal) {
    const int64_t n = x.size(0), l = x.size(1), c = x.size(2);
    // [N, L, 3C] -> [3, N, heads, L, head_dim]
    auto qkv = at::linear(x, in_proj_weight, in_proj_bias)
                   .view({n, l, 3, heads_, c / heads_})
                   .permute({2, 0, 3, 1, 4});
    auto out = at::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], /*attn_mask=*/{},
                                                /*dropout_p=*/0.0, causal);
    return out_proj(out.transpose(1, 2).reshape({n, l, c}));
  }

  torch::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(SelfAttention);

// nn.Sequential(c_fc, act, c_proj); the activation has no parameters, so only the
// two Linear layers carry names.
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t width, int64_t hidden, bool quick_gelu) : quick_gelu_(quick_gelu) {
    c_fc = register_module("c_fc", torch::nn::Linear(width, hidden));
    c_proj = register_module("c_proj", torch::nn::Linear(hidden, width));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto h = c_fc(x);
    // QuickGELU exactly as OpenCLIP writes it, so rounding matches too.
    h = quick_gelu_ ? h * at::sigmoid(1.702 * h) : at::gelu(h);
    return c_proj(h);
  }

  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};

 private:
  bool quick_gelu_;
};
TORCH_MODULE(Mlp);

class ResidualAttentionBlockImpl : public torch::nn::Module {
 public:
  explicit ResidualAttentionBlockImpl(const TransformerOptions& o) {
    const auto ln = torch::nn::LayerNormOptions({o.width()}).eps(1e-5);
    ln_1 = register_module("ln_1", torch::nn::LayerNorm(ln));
    attn = register_module("attn", SelfAttention(o.width(), o.heads()));
    ln_2 = register_module("ln_2", torch::nn::LayerNorm(ln));
    const auto hidden = static_cast<int64_t>(static_cast<double>(o.width()) * o.mlp_ratio());
    mlp = register_module("mlp", Mlp(o.width(), hidden, o.quick_gelu()));
  }

  torch::Tensor forward(const torch::Tensor& x, bool causal) {
    auto y = x + attn(ln_1(x), causal);
    return y + mlp(ln_2(y));
  }

  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  SelfAttention attn{nullptr};
  Mlp mlp{nullptr};
};

}  // namespace

TransformerImpl::TransformerImpl(const TransformerOptions& options) : options_(options) {
  resblocks_ = register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options_.layers(); ++i) {
    resblocks_->push_back(std::make_shared<ResidualAttentionBlockImpl>(options_));
  }
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& x, bool causal) {
  torch::Tensor y = x;
  for (const auto& block : *resblocks_) {
    auto* impl = block->as<ResidualAttentionBlockImpl>();
    if (grad_checkpointing_ && is_training()) {
      y = Checkpoint([impl, causal](const torch::Tensor& in) { return impl->forward(in, causal); }, y);
    } else {
      y = impl->forward(y, causal);
    }
  }
  return y;
}

void TransformerImpl::InitTextParameters() {
  const double width = static_cast<double>(options_.width());
  const double attn_std = std::pow(width, -0.5);
  const double proj_std = attn_std * std::pow(2.0 * static_cast<double>(options_.layers()), -0.5);
  const double fc_std = std::pow(2.0 * width, -0.5);
  torch::NoGradGuard no_grad;
  for (const auto& module : *resblocks_) {
    auto* block = module->as<ResidualAttentionBlockImpl>();
    torch::nn::init::normal_(block->attn->in_proj_weight, 0.0, attn_std);
    torch::nn::init::normal_(block->attn->out_proj->weight, 0.0, proj_std);
    torch::nn::init::normal_(block->mlp->c_fc->weight, 0.0, fc_std);
    torch::nn::init::normal_(block->mlp->c_proj->weight, 0.0, proj_std);
  }
}

}  // namespace clipscale
