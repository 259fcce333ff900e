// The tiled losses against OpenCLIP's ClipLoss and SigLipLoss themselves
// (tests/py/contrastive_loss_reference.py, one process, fp64 autograd).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <string>
#include <vector>

#include "core/npy.h"
#include "distributed/contrastive_loss.h"
#include "distributed/local_communicator.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

at::Tensor LoadF64(const std::string& dir, const std::string& name) {
  absl::StatusOr<NpyArray> array = ReadNpy(dir + "/" + name + ".npy");
  EXPECT_TRUE(array.ok()) << array.status();
  if (!array.ok()) return at::Tensor();
  EXPECT_EQ(array->descr, "<f8") << name;
  std::vector<uint8_t>& bytes = array->bytes;
  return at::from_blob(bytes.data(), array->shape, at::kDouble).clone();
}

// fp64 on both sides, different summation orders: 1e-10 relative to the largest
// entry (or to 1 for the loss) is ~10⁶ ulps of margin and far below any real error.
void ExpectClose(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.numel(), want.numel()) << what;
  const double scale = std::max(want.abs().max().item<double>(), what == "loss" ? 1.0 : 0.0);
  const double diff = (got.reshape(want.sizes()) - want).abs().max().item<double>();
  EXPECT_LE(diff, 1e-10 * scale) << what;
}

TEST(ContrastiveLossParityTest, MatchesOpenClipAtScale100WithDuplicates) {
  const std::string dir = testing::MakeTempDir();
  // N = 50 with tiles of 7: ragged last tiles in both directions.
  absl::StatusOr<std::string> out =
      testing::RunPythonScript("contrastive_loss_reference.py", {dir, "50", "16", "100"});
  ASSERT_TRUE(out.ok()) << out.status();
  const at::Tensor x0 = LoadF64(dir, "x"), y0 = LoadF64(dir, "y");
  const at::Tensor t0 = LoadF64(dir, "t"), b0 = LoadF64(dir, "b");
  LocalCommunicator comm;
  for (const std::string name : {"clip", "siglip"}) {
    at::Tensor x = x0.clone().requires_grad_(true), y = y0.clone().requires_grad_(true);
    at::Tensor t = t0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
    const bool clip = name == "clip";
    at::Tensor loss =
        clip ? TiledClipLoss(x, y, t, &comm, 7) : TiledSigLipLoss(x, y, t, b, &comm, 7);
    std::vector<at::Tensor> wrt = {x, y, t};
    if (!clip) wrt.push_back(b);
    const std::vector<at::Tensor> grads = torch::autograd::grad({loss}, wrt);
    ExpectClose(loss.detach(), LoadF64(dir, name + "_loss"), "loss");
    ExpectClose(grads[0], LoadF64(dir, name + "_gx"), name + " d image");
    ExpectClose(grads[1], LoadF64(dir, name + "_gy"), name + " d text");
    ExpectClose(grads[2], LoadF64(dir, name + "_gt"), name + " d logit_scale");
    if (!clip) ExpectClose(grads[3], LoadF64(dir, name + "_gb"), name + " d logit_bias");
  }
}

}  // namespace
}  // namespace clipscale
