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

TEST(OptimizerTest, MakeAdamWIsFused) {
  ClipModel model = TinyModel();
  auto adamw = MakeAdamW(*model, OptimizerConfig());
  EXPECT_NE(dynamic_cast<FusedAdamW*>(adamw.get()), nullptr);
}

// Copies of the tiny model's parameters, split as MakeAdamW splits them, as
// fresh leaves of `dtype`; `extra` (non-contiguous: torch's per-op fallback) is
// appended to the decay group.
struct ParamCopies {
  std::vector<torch::Tensor> decay, no_decay;
  std::vector<torch::Tensor> All() const {
    std::vector<torch::Tensor> all = decay;
    all.insert(all.end(), no_decay.begin(), no_decay.end());
    return all;
  }
};

ParamCopies Copy(const ParameterGroups& groups, torch::Dtype dtype, const torch::Tensor& extra) {
  auto leaf = [&](const torch::Tensor& t) {
    return t.detach().to(dtype).clone().set_requires_grad(true);
  };
  ParamCopies copies;
  for (const auto& t : groups.decay) copies.decay.push_back(leaf(t));
  for (const auto& t : groups.no_decay) copies.no_decay.push_back(leaf(t));
  copies.decay.push_back(leaf(extra.t()));  // clone keeps the transposed strides
  EXPECT_FALSE(copies.decay.back().is_contiguous());
  return copies;
}

template <class Optimizer>
std::unique_ptr<Optimizer> MakeOptimizer(const ParamCopies& params, const OptimizerConfig& config) {
  return std::make_unique<Optimizer>(AdamWParamGroups(params.decay, params.no_decay, config),
                                     torch::optim::AdamWOptions(0.0));
}

// Runs torch's AdamW and FusedAdamW side by side for several steps (varying lr,
// random gradients) and compares parameters and moments after the last one.
void ExpectFusedMatchesTorch(torch::Dtype dtype, double rtol, double atol) {
  torch::manual_seed(0);
  ClipModel model = TinyModel();
  ParameterGroups groups = SplitForWeightDecay(*model);
  torch::Tensor extra = torch::randn({24, 40});
  ParamCopies ref_params = Copy(groups, dtype, extra);
  ParamCopies fused_params = Copy(groups, dtype, extra);
  OptimizerConfig config;
  auto ref = MakeOptimizer<torch::optim::AdamW>(ref_params, config);
  auto fused = MakeOptimizer<FusedAdamW>(fused_params, config);
  const std::vector<torch::Tensor> ref_all = ref_params.All(), fused_all = fused_params.All();
  constexpr int kSteps = 6;
  for (int step = 0; step < kSteps; ++step) {
    SetLearningRate(*ref, 1e-2 / (step + 1));
    SetLearningRate(*fused, 1e-2 / (step + 1));
    for (size_t i = 0; i < ref_all.size(); ++i) {
      torch::Tensor grad = torch::randn(ref_all[i].sizes(), torch::TensorOptions(dtype));
      ref_all[i].mutable_grad() = grad.clone();
      fused_all[i].mutable_grad() = grad.clone();
    }
    ref->step();
    fused->step();
  }
  for (size_t i = 0; i < ref_all.size(); ++i) {
    const auto& r = static_cast<torch::optim::AdamWParamState&>(
        *ref->state().at(ref_all[i].unsafeGetTensorImpl()));
    const auto& f = static_cast<torch::optim::AdamWParamState&>(
        *fused->state().at(fused_all[i].unsafeGetTensorImpl()));
    EXPECT_EQ(f.step(), kSteps);
    EXPECT_TRUE(torch::allclose(fused_all[i], ref_all[i], rtol, atol)) << "param " << i;
    EXPECT_TRUE(torch::allclose(f.exp_avg(), r.exp_avg(), rtol, atol)) << "exp_avg " << i;
    EXPECT_TRUE(torch::allclose(f.exp_avg_sq(), r.exp_avg_sq(), rtol, atol)) << "exp_avg_sq " << i;
  }
}

// The fused loop performs torch's operations in torch's order; the only
// difference is that ATen's vectorized add_ (exp_avg += (1-beta1) * g) uses an
// FMA (one rounding) where the portable loop rounds twice. That is <= 1 ulp on a
// moment per step, i.e. a relative 1e-7 (fp32) / 2e-16 (fp64) change of an
// update of size ~lr, which six steps cannot grow past these tolerances; the
// absolute term covers moments that cancel towards zero (|g| ~ 1).
TEST(OptimizerTest, FusedStepMatchesTorchAdamWFloat) {
  ExpectFusedMatchesTorch(torch::kFloat, /*rtol=*/1e-5, /*atol=*/1e-6);
}

TEST(OptimizerTest, FusedStepMatchesTorchAdamWDouble) {
  ExpectFusedMatchesTorch(torch::kDouble, /*rtol=*/1e-12, /*atol=*/1e-14);
}

}  // namespace
}  // namespace clipscale
