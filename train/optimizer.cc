#include "train/optimizer.h"

#include "absl/strings/match.h"

namespace clipscale {

bool ExcludedFromWeightDecay(const std::string& name, const torch::Tensor& parameter) {
  // OpenCLIP v3's rule (ndim < 2, "bn", "ln", "bias", "logit_scale") plus
  // main's no_weight_decay() set, which adds the 2-D positional embeddings.
  return parameter.dim() < 2 || absl::StrContains(name, "bn") || absl::StrContains(name, "ln") ||
         absl::StrContains(name, "bias") || absl::StrContains(name, "logit_scale") ||
         absl::EndsWith(name, "positional_embedding") || absl::EndsWith(name, "class_embedding");
}

ParameterGroups SplitForWeightDecay(const torch::nn::Module& model) {
  ParameterGroups groups;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    if (ExcludedFromWeightDecay(item.key(), item.value())) {
      groups.no_decay_names.push_back(item.key());
      groups.no_decay.push_back(item.value());
    } else {
      groups.decay_names.push_back(item.key());
      groups.decay.push_back(item.value());
    }
  }
  return groups;
}

std::unique_ptr<torch::optim::AdamW> MakeAdamW(const torch::nn::Module& model,
                                               const OptimizerConfig& config) {
  ParameterGroups groups = SplitForWeightDecay(model);
  auto options = [&](double decay) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(0.0);
    o->betas({config.beta1, config.beta2}).eps(config.eps).weight_decay(decay);
    return o;
  };
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  param_groups.emplace_back(groups.decay, options(config.weight_decay));
  param_groups.emplace_back(groups.no_decay, options(0.0));
  return std::make_unique<torch::optim::AdamW>(param_groups,
                                               torch::optim::AdamWOptions(0.0)
                                                   .betas({config.beta1, config.beta2})
                                                   .eps(config.eps));
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    group.options().set_lr(lr);
  }
}

}  // namespace clipscale
