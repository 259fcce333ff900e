// The GPU path, for scripts/gpu-check.sh on a machine with a CUDA device: the
// tiled losses on CUDA against the CPU result, the loader's pinned batch
// buffers, and a short `clipscale train` on CUDA over NCCL (one rank) that
// ends with its replica check. Without a CUDA device every case skips, and
// ctest reports the entries as skipped, never as passed (tests/CMakeLists.txt).
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/file_util.h"
#include "data/tokenizer.h"
#include "distributed/contrastive_loss.h"
#include "distributed/local_communicator.h"
#include "tests/test_util.h"
#include "train/train_config.h"
#include "train/train_data.h"

namespace clipscale {
namespace {

using testing::ShellQuote;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

struct LossResult {
  double loss = 0;
  torch::Tensor grad_image, grad_text, grad_scale;  // on the CPU, fp32
};

// The loss and its input gradients of one process over the whole batch.
LossResult RunLoss(bool siglip, const torch::Tensor& image, const torch::Tensor& text,
                   const torch::Device& device) {
  LocalCommunicator comm;
  torch::Tensor x = image.to(device).detach().requires_grad_(true);
  torch::Tensor y = text.to(device).detach().requires_grad_(true);
  torch::Tensor t =
      torch::full({}, std::log(14.3), torch::TensorOptions(device)).requires_grad_(true);
  torch::Tensor b = torch::full({}, -10.0, torch::TensorOptions(device));
  torch::Tensor loss = siglip ? TiledSigLipLoss(x, y, t, b, &comm, /*tile=*/512)
                              : TiledClipLoss(x, y, t, &comm, /*tile=*/512);
  loss.backward();
  return {loss.item<double>(), x.grad().cpu().to(torch::kFloat), y.grad().cpu().to(torch::kFloat),
          t.grad().cpu().to(torch::kFloat)};
}

double RelativeError(const torch::Tensor& got, const torch::Tensor& want) {
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

// fp32 matmuls on the GPU (no TF32) against the CPU: both sum the same
// products in another order, so they agree to a few fp32 ulps of the largest
// terms (1e-5 relative leaves room for N = 2,048 terms per sum). bf16 inputs
// are the same rounded values on both sides and both accumulate per tile in
// fp32, so the loss agrees as tightly; the input gradients come out in bf16
// (one rounding: 2^-8 relative), where one side's value may round to the
// neighbour of the other's.
TEST(GpuLoss, TiledLossesOnCudaEqualTheCpuOnes) {
  REQUIRE_CUDA();
  at::globalContext().setAllowTF32CuBLAS(false);
  torch::manual_seed(7);
  const torch::Tensor image = torch::nn::functional::normalize(
      torch::randn({2048, 256}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const torch::Tensor text =
      torch::nn::functional::normalize(image + 0.5 * torch::randn({2048, 256}),
                                       torch::nn::functional::NormalizeFuncOptions().dim(1));
  for (bool siglip : {false, true}) {
    for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
      const std::string what =
          std::string(siglip ? "siglip" : "clip") + (dtype == torch::kFloat ? " fp32" : " bf16");
      const LossResult cpu = RunLoss(siglip, image.to(dtype), text.to(dtype), torch::kCPU);
      const LossResult gpu = RunLoss(siglip, image.to(dtype), text.to(dtype), torch::kCUDA);
      EXPECT_NEAR(gpu.loss, cpu.loss, 1e-5 * std::abs(cpu.loss)) << what;
      const double grad_bound = dtype == torch::kFloat ? 1e-5 : 1.0 / 128;
      EXPECT_LE(RelativeError(gpu.grad_image, cpu.grad_image), grad_bound) << what;
      EXPECT_LE(RelativeError(gpu.grad_text, cpu.grad_text), grad_bound) << what;
      EXPECT_LE(RelativeError(gpu.grad_scale, cpu.grad_scale), 1e-4) << what;
      std::printf("%s: loss %.9g (CPU %.9g), image gradient rel. error %.3g\n", what.c_str(),
                  gpu.loss, cpu.loss, RelativeError(gpu.grad_image, cpu.grad_image));
    }
  }
}

std::string WriteRecipe(const std::string& dir, const std::string& extra) {
  const std::string data =
      testing::SharedSynthData("gpu_test_data", "--train 256 --val 32 --seed 3");
  const std::string path = dir + "/recipe.yaml";
  std::ofstream(path) << testing::kTinyModelYaml << "data:\n  train: " << data
                      << "/train\n  val: " << data
                      << "/val\n  batch_size: 32\n"
                         "eval:\n  templates: [\"a {}.\"]\n"
                         "device: cuda\nepochs: 1\nlog_every: 2\noutput: "
                      << dir << "/run\n"
                      << extra;
  return path;
}

// On CUDA the loader assembles batches in pinned host memory (so that the
// copies to the device are asynchronous), and a batch copied there and back
// is the same bytes.
TEST(GpuLoader, BatchesArePinnedAndCopyIntact) {
  REQUIRE_CUDA();
  const std::string dir = testing::MakeTempDir();
  auto config = LoadTrainConfig(WriteRecipe(dir, ""), {});
  ASSERT_TRUE(config.ok()) << config.status();
  auto tokenizer = ClipTokenizer::LoadDefault();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  LocalCommunicator comm;
  auto data = OpenTrainData(*config, *tokenizer, comm, /*workers=*/2, torch::Device(torch::kCUDA));
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_TRUE(data->loader->Seek(0, 0).ok());
  auto batch = data->loader->Next();
  ASSERT_TRUE(batch.ok()) << batch.status();
  const int64_t size = config->model_config.vision.image_size;
  const torch::Tensor images = torch::from_blob((*batch)->images, {(*batch)->rows, 3, size, size});
  EXPECT_TRUE(images.is_pinned());
  const torch::Tensor back = images.to(torch::kCUDA, /*non_blocking=*/true).cpu();
  EXPECT_TRUE(torch::equal(back, images));
}

// A short run on CUDA over NCCL (one rank: one GPU), in bf16 autocast: it
// trains, evaluates, saves, and its end-of-run replica check passes.
TEST(GpuTrain, ShortNcclRunTrainsAndPassesItsReplicaCheck) {
  REQUIRE_CUDA();
  const std::string dir = testing::MakeTempDir();
  const std::string recipe =
      WriteRecipe(dir, "precision: amp_bf16\ndistributed:\n  backend: nccl\n");
  auto r = testing::RunCommand(testing::Mpirun(1) + ShellQuote(testing::ClipscaleBinary()) +
                               " train --config " + ShellQuote(recipe));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(nccl, cuda"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/model.safetensors"));
  auto metrics = ReadFile(dir + "/run/metrics.jsonl");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_NE(metrics->find("\"train/loss\""), std::string::npos);
  EXPECT_EQ(metrics->find("NaN"), std::string::npos) << *metrics;
}

}  // namespace
}  // namespace clipscale
