#include "models/weights_io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <sstream>

#include "tests/test_util.h"

namespace clipscale {
namespace {

using ::testing::HasSubstr;

// Mirrors make() in tests/py/st_torch.py: same LibTorch operations, same bits.
at::Tensor Make(at::ScalarType dtype, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  at::Tensor values;
  if (dtype == at::kBool) {
    values = at::arange(n, at::kLong).remainder(3).eq(0);
  } else if (at::isFloatingType(dtype)) {
    values = (at::arange(n, at::kDouble) * 0.37 - 5).to(dtype);
  } else {
    values = (at::arange(n, at::kLong) * 3 + 1).to(dtype);
  }
  return values.reshape(shape);
}

std::map<std::string, at::Tensor> ReferenceTensors() {
  const std::pair<const char*, at::ScalarType> dtypes[] = {
      {"f64", at::kDouble}, {"f32", at::kFloat}, {"f16", at::kHalf},  {"bf16", at::kBFloat16},
      {"i64", at::kLong},   {"i32", at::kInt},   {"i16", at::kShort}, {"i8", at::kChar},
      {"u8", at::kByte},    {"bool", at::kBool}};
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, dtype] : dtypes)
    tensors[std::string("x_") + name] = Make(dtype, {2, 3, 4});
  tensors["scalar"] = Make(at::kFloat, {});
  tensors["empty"] = Make(at::kHalf, {0, 5});
  return tensors;
}

void ExpectSameTensors(const std::map<std::string, at::Tensor>& got,
                       const std::map<std::string, at::Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, tensor] : want) {
    ASSERT_EQ(got.count(name), 1u) << name;
    const at::Tensor& other = got.at(name);
    EXPECT_EQ(other.scalar_type(), tensor.scalar_type()) << name;
    EXPECT_EQ(other.sizes(), tensor.sizes()) << name;
    EXPECT_TRUE(at::equal(other.cpu(), tensor.cpu())) << name;
  }
}

// A small module with the kinds of state OpenCLIP models carry: nested
// Sequential children, a BatchNorm with its int64 counter, a free parameter.
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    fc = register_module("fc", torch::nn::Linear(4, 3));
    bn = register_module("bn", torch::nn::BatchNorm1d(3));
    block = register_module(
        "block",
        torch::nn::Sequential(torch::nn::Linear(3, 2), torch::nn::ReLU(), torch::nn::Linear(2, 2)));
    scale = register_parameter("scale", torch::randn({1}));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Sequential block{nullptr};
  at::Tensor scale;
};
TORCH_MODULE(TinyNet);

std::map<std::string, at::Tensor> Snapshot(const torch::nn::Module& module) {
  std::map<std::string, at::Tensor> copy;
  for (const auto& [name, tensor] : StateDict(module)) copy[name] = tensor.detach().clone();
  return copy;
}

TEST(WeightsIoTest, StateDictUsesOpenClipKeyNames) {
  TinyNet net;
  std::vector<std::string> keys;
  for (const auto& [name, tensor] : StateDict(*net)) keys.push_back(name);
  EXPECT_THAT(keys, ::testing::ElementsAre("block.0.bias", "block.0.weight", "block.2.bias",
                                           "block.2.weight", "bn.bias", "bn.num_batches_tracked",
                                           "bn.running_mean", "bn.running_var", "bn.weight",
                                           "fc.bias", "fc.weight", "scale"));
  EXPECT_EQ(StateDict(*net).at("bn.num_batches_tracked").scalar_type(), at::kLong);
}

TEST(WeightsIoTest, RoundTripsEveryDtype) {
  const std::string path = testing::MakeTempDir() + "/t.safetensors";
  std::map<std::string, at::Tensor> tensors = ReferenceTensors();
  tensors["transposed"] = Make(at::kFloat, {3, 5}).t();  // written contiguous, same values
  ASSERT_TRUE(WriteTensors(path, tensors).ok());
  absl::StatusOr<std::map<std::string, at::Tensor>> read = ReadTensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSameTensors(*read, tensors);
}

TEST(WeightsIoTest, InteroperatesWithPythonSafetensors) {
  const std::string dir = testing::MakeTempDir();
  ASSERT_TRUE(
      WriteTensors(dir + "/ours.safetensors", ReferenceTensors(), {{"writer", "clipscale"}}).ok());
  absl::StatusOr<std::string> out = testing::RunPythonScript(
      "st_torch.py", {dir + "/ours.safetensors", dir + "/theirs.safetensors"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("ok"));
  absl::StatusOr<std::map<std::string, at::Tensor>> theirs =
      ReadTensors(dir + "/theirs.safetensors");
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  ExpectSameTensors(*theirs, ReferenceTensors());
}

TEST(WeightsIoTest, SaveThenLoadRestoresEveryTensor) {
  const std::string path = testing::MakeTempDir() + "/net.safetensors";
  TinyNet source;
  {
    torch::NoGradGuard no_grad;
    source->bn->running_mean.uniform_(-1, 1);
    source->bn->num_batches_tracked.fill_(7);
  }
  ASSERT_TRUE(SaveWeights(*source, path).ok());
  TinyNet target;  // different random init
  ASSERT_FALSE(at::equal(target->fc->weight, source->fc->weight));
  ASSERT_TRUE(LoadWeights(*target, path).ok());
  ExpectSameTensors(StateDict(*target), StateDict(*source));
  EXPECT_TRUE(target->fc->weight.requires_grad()) << "loading must not detach parameters";
}

TEST(WeightsIoTest, StrictLoadNamesEveryMismatchAndChangesNothing) {
  const std::string path = testing::MakeTempDir() + "/bad.safetensors";
  TinyNet net;
  std::map<std::string, at::Tensor> tensors = Snapshot(*net);
  tensors.erase("fc.bias");
  tensors.erase("block.2.weight");
  tensors["fc.extra"] = at::zeros({2});
  tensors["bn.weight"] = at::zeros({4});
  for (auto& [name, tensor] : tensors)
    tensor = tensor.to(at::kFloat).add(1).to(tensor.scalar_type());
  ASSERT_TRUE(WriteTensors(path, tensors).ok());
  const std::map<std::string, at::Tensor> before = Snapshot(*net);

  const absl::Status status = LoadWeights(*net, path);
  ASSERT_FALSE(status.ok());
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr(path));
  EXPECT_THAT(message, HasSubstr("2 missing keys: block.2.weight, fc.bias"));
  EXPECT_THAT(message, HasSubstr("1 unexpected keys: fc.extra"));
  EXPECT_THAT(message, HasSubstr("bn.weight (file [4], model [3])"));
  ExpectSameTensors(StateDict(*net), before);
}

TEST(WeightsIoTest, LongKeyListsAreCut) {
  torch::nn::Sequential many;
  for (int i = 0; i < 30; ++i) many->push_back(torch::nn::Linear(2, 2));
  const std::string path = testing::MakeTempDir() + "/empty.safetensors";
  ASSERT_TRUE(WriteTensors(path, {}).ok());
  const std::string message(LoadWeights(*many, path).message());
  EXPECT_THAT(message, HasSubstr("60 missing keys: "));
  EXPECT_THAT(message, HasSubstr("(40 more)"));
}

TEST(WeightsIoTest, LoadConvertsDtypes) {
  const std::string dir = testing::MakeTempDir();
  TinyNet source;
  std::map<std::string, at::Tensor> half;
  for (const auto& [name, tensor] : Snapshot(*source)) {
    half[name] = tensor.is_floating_point() ? tensor.to(at::kBFloat16) : tensor;
  }
  ASSERT_TRUE(WriteTensors(dir + "/bf16.safetensors", half).ok());
  TinyNet target;
  ASSERT_TRUE(LoadWeights(*target, dir + "/bf16.safetensors").ok());
  for (const auto& [name, tensor] : StateDict(*target)) {
    EXPECT_EQ(tensor.scalar_type(), Snapshot(*source).at(name).scalar_type()) << name;
    EXPECT_TRUE(at::equal(tensor, half.at(name).to(tensor.scalar_type()))) << name;
  }
  // And the other way: an fp32 file into a bf16 module rounds like Tensor.to().
  ASSERT_TRUE(SaveWeights(*source, dir + "/f32.safetensors").ok());
  target->to(at::kBFloat16);
  ASSERT_TRUE(LoadWeights(*target, dir + "/f32.safetensors").ok());
  EXPECT_TRUE(at::equal(target->fc->weight, source->fc->weight.to(at::kBFloat16)));
}

TEST(WeightsIoTest, CorruptOrUnsupportedGivesErrors) {
  const std::string dir = testing::MakeTempDir();
  TinyNet net;
  ASSERT_TRUE(SaveWeights(*net, dir + "/net.safetensors").ok());
  std::ifstream in(dir + "/net.safetensors", std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  std::ofstream(dir + "/cut.safetensors", std::ios::binary) << bytes.str().substr(0, 200);
  EXPECT_FALSE(LoadWeights(*net, dir + "/cut.safetensors").ok());
  EXPECT_FALSE(ReadTensors(dir + "/cut.safetensors").ok());
  EXPECT_FALSE(LoadWeights(*net, dir + "/missing.safetensors").ok());

  const absl::Status status =
      WriteTensors(dir + "/c.safetensors", {{"z", at::zeros({2}, at::kComplexFloat)}});
  EXPECT_THAT(std::string(status.message()), HasSubstr("'z'"));
}

TEST(WeightsIoTest, LoadsIntoCudaModules) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::string path = testing::MakeTempDir() + "/net.safetensors";
  TinyNet source;
  ASSERT_TRUE(SaveWeights(*source, path).ok());
  TinyNet target;
  target->to(at::kCUDA);
  ASSERT_TRUE(LoadWeights(*target, path).ok());
  EXPECT_TRUE(target->fc->weight.is_cuda());
  ExpectSameTensors(StateDict(*target), StateDict(*source));
  ASSERT_TRUE(SaveWeights(*target, path).ok());  // device tensors are copied to host
  ExpectSameTensors(*ReadTensors(path), StateDict(*source));
}

}  // namespace
}  // namespace clipscale
