// Weight decay goes to matrices only, as OpenCLIP groups parameters.
#include "train/optimizer.h"

#include <gtest/gtest.h>

#include <set>

#include "models/clip_model.h"

namespace clipscale {
namespace {

ClipModel TinyModel() {
  auto config = LoadModelConfig("tiny");
  EXPECT_TRUE(config.ok()) << config.status();
  return ClipModel(*config);
}

TEST(OptimizerTest, DecayOnlyOnMatrices) {
  ClipModel model = TinyModel();
  ParameterGroups groups = SplitForWeightDecay(*model);
  std::set<std::string> decay(groups.decay_names.begin(), groups.decay_names.end());
  std::set<std::string> no_decay(groups.no_decay_names.begin(), groups.no_decay_names.end());
  for (const char* name : {"logit_scale", "positional_embedding", "visual.class_embedding",
                           "visual.positional_embedding", "ln_final.weight", "ln_final.bias",
                           "visual.ln_pre.weight", "transformer.resblocks.0.ln_1.weight",
                           "transformer.resblocks.0.attn.in_proj_bias",
                           "transformer.resblocks.0.mlp.c_fc.bias"}) {
    EXPECT_TRUE(no_decay.count(name)) << name;
  }
  for (const char* name : {"token_embedding.weight", "text_projection", "visual.proj",
                           "visual.conv1.weight", "transformer.resblocks.0.attn.in_proj_weight",
                           "transformer.resblocks.0.mlp.c_fc.weight"}) {
    EXPECT_TRUE(decay.count(name)) << name;
  }
  // Every trainable parameter lands in exactly one group.
  EXPECT_EQ(decay.size() + no_decay.size(), model->named_parameters().size());
  for (const auto& name : decay) EXPECT_FALSE(no_decay.count(name)) << name;
}

TEST(OptimizerTest, FrozenParametersAreLeftOut) {
  ClipModel model = TinyModel();
  for (auto& p : model->visual().parameters()) p.set_requires_grad(false);
  ParameterGroups groups = SplitForWeightDecay(*model);
  for (const auto& name : groups.decay_names) EXPECT_NE(name.rfind("visual.", 0), 0u) << name;
  for (const auto& name : groups.no_decay_names) EXPECT_NE(name.rfind("visual.", 0), 0u) << name;
}

TEST(OptimizerTest, AdamWUsesOpenClipHyperparameters) {
  ClipModel model = TinyModel();
  OptimizerConfig config;
  auto adamw = MakeAdamW(*model, config);
  ASSERT_EQ(adamw->param_groups().size(), 2u);
  const auto& decay = static_cast<const torch::optim::AdamWOptions&>(adamw->param_groups()[0].options());
  const auto& none = static_cast<const torch::optim::AdamWOptions&>(adamw->param_groups()[1].options());
  EXPECT_DOUBLE_EQ(decay.weight_decay(), 0.2);
  EXPECT_DOUBLE_EQ(none.weight_decay(), 0.0);
  EXPECT_DOUBLE_EQ(std::get<1>(decay.betas()), 0.98);
  EXPECT_DOUBLE_EQ(decay.eps(), 1e-6);
  SetLearningRate(*adamw, 0.125);
  EXPECT_DOUBLE_EQ(adamw->param_groups()[1].options().get_lr(), 0.125);
}

}  // namespace
}  // namespace clipscale
