// Gradient checkpointing changes no gradient; a locked image tower (LiT) gets
// none and does not move.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "models/clip_model.h"
#include "train/metrics.h"
#include "train/optimizer.h"

namespace clipscale {
namespace {

std::map<std::string, torch::Tensor> Gradients(bool checkpointing) {
  torch::manual_seed(5);
  ModelConfig config = *LoadModelConfig("tiny");
  ClipModel model(config);
  model->train();
  model->SetGradCheckpointing(checkpointing);
  torch::Tensor images = torch::randn({6, 3, 64, 64});
  torch::Tensor tokens = torch::randint(1, 49000, {6, 32});
  tokens.select(1, 20).fill_(49407);  // end-of-text
  auto [img, txt, scale] = model->forward(images, tokens);
  ClipLoss(img, txt, scale).backward();
  std::map<std::string, torch::Tensor> grads;
  for (const auto& p : model->named_parameters()) grads[p.key()] = p.value().grad().clone();
  return grads;
}

TEST(GradCheckpointingTest, SameGradients) {
  auto plain = Gradients(false);
  auto checkpointed = Gradients(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  for (const auto& [name, grad] : plain) {
    ASSERT_TRUE(checkpointed[name].defined()) << name;
    // The recomputed forward runs the same kernels on the same inputs, so the
    // gradients agree to float rounding of a different accumulation order.
    EXPECT_TRUE(torch::allclose(grad, checkpointed[name], 1e-5, 1e-7)) << name;
  }
}

TEST(LockImageTest, ImageTowerGetsNoGradientAndDoesNotMove) {
  torch::manual_seed(6);
  ClipModel model(*LoadModelConfig("tiny"));
  for (auto& p : model->visual().parameters()) p.set_requires_grad(false);
  auto optimizer = MakeAdamW(*model, OptimizerConfig());
  SetLearningRate(*optimizer, 1e-2);
  const torch::Tensor before = model->visual().parameters()[0].clone();
  const torch::Tensor text_before = model->named_parameters()["text_projection"].clone();
  torch::Tensor images = torch::randn({4, 3, 64, 64});
  torch::Tensor tokens = torch::randint(1, 49000, {4, 32});
  tokens.select(1, 10).fill_(49407);
  torch::Tensor image_features;
  {
    torch::NoGradGuard no_grad;
    image_features = model->EncodeImage(images);
  }
  EXPECT_FALSE(image_features.requires_grad());
  ClipLoss(image_features, model->EncodeText(tokens), model->logit_scale().exp()).backward();
  optimizer->step();
  for (const auto& p : model->visual().parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_TRUE(torch::equal(before, model->visual().parameters()[0]));
  EXPECT_FALSE(torch::equal(text_before, model->named_parameters()["text_projection"]));
}

}  // namespace
}  // namespace clipscale
