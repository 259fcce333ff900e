// ZeRO-1 (train/zero.h), run by ctest under mpiexec with W = 1, 2 and 4
// ranks. Every rank builds the unsharded reference itself: the same fp64
// parameters, every rank's local gradients (drawn from per-rank seeds) summed,
// and FusedAdamW stepping on the sum. The gradients are multiples of 2^-6 below
// 2^4, so their sums are exact in any order: the reduce-scatter's sum is the
// reference's sum to the bit, and any difference in the parameters or moments
// is the sharded update's own. The parameter sizes are uneven (133 elements:
// shards of 67 at W = 2, of 34 with 3 padding elements at W = 4), shards split
// parameters, and decayed and undecayed parameters alternate.
#include "train/zero.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "models/weights_io.h"
#include "tests/mpi_environment.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"
#include "train/host_collectives.h"
#include "train/optimizer.h"

namespace clipscale {
namespace {

using testing::Comm;

struct Shape {
  const char* name;
  std::vector<int64_t> sizes;
};
// Names decide the weight decay as OpenCLIP's rule does (ExcludedFromWeightDecay).
const std::vector<Shape> kShapes = {
    {"a.weight", {7}},     {"b.weight", {13, 5}},      {"c.bias", {1}},
    {"d.weight", {3, 11}}, {"e.ln.weight", {2, 3, 4}}, {"logit_scale", {3}}};
constexpr int kSteps = 5;

double Lr(int step) { return 1e-2 / (1 + step); }

std::vector<torch::Tensor> InitialParams() {
  torch::manual_seed(3);
  std::vector<torch::Tensor> params;
  for (const Shape& s : kShapes) {
    params.push_back(torch::randn(s.sizes, torch::kFloat64).requires_grad_(true));
  }
  return params;
}

// Rank `rank`'s local gradient of parameter `i` at `step`: k / 64, |k| < 1024.
torch::Tensor LocalGrad(int rank, int step, size_t i) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 * rank + 10 * step + i);
  return torch::randint(-1023, 1024, kShapes[i].sizes, gen, torch::kFloat64) / 64.0;
}

std::vector<ZeroParam> Named(const std::vector<torch::Tensor>& params) {
  std::vector<ZeroParam> named;
  for (size_t i = 0; i < params.size(); ++i) {
    named.push_back(
        {kShapes[i].name, params[i], !ExcludedFromWeightDecay(kShapes[i].name, params[i])});
  }
  return named;
}

OptimizerConfig Config() {
  OptimizerConfig config;
  config.weight_decay = 0.1;
  return config;
}

// The unsharded reference: FusedAdamW on the summed gradients of all ranks.
struct Reference {
  std::vector<torch::Tensor> params = InitialParams();
  std::unique_ptr<FusedAdamW> adamw;
  Reference() {
    std::vector<torch::Tensor> decay, none;
    for (const ZeroParam& p : Named(params)) (p.decay ? decay : none).push_back(p.tensor);
    adamw = std::make_unique<FusedAdamW>(AdamWParamGroups(decay, none, Config()),
                                         torch::optim::AdamWOptions(0.0));
  }
  void Step(int step, int world) {
    for (size_t i = 0; i < params.size(); ++i) {
      torch::Tensor sum = torch::zeros(kShapes[i].sizes, torch::kFloat64);
      for (int r = 0; r < world; ++r) sum += LocalGrad(r, step, i);
      params[i].mutable_grad() = sum;
    }
    SetLearningRate(*adamw, Lr(step));
    adamw->step();
  }
  // The moments in flat layout order.
  std::pair<torch::Tensor, torch::Tensor> FlatMoments() {
    std::vector<torch::Tensor> m, v;
    for (const torch::Tensor& p : params) {
      auto& s =
          static_cast<torch::optim::AdamWParamState&>(*adamw->state()[p.unsafeGetTensorImpl()]);
      m.push_back(s.exp_avg().reshape({-1}));
      v.push_back(s.exp_avg_sq().reshape({-1}));
    }
    return {torch::cat(m), torch::cat(v)};
  }
};

void Train(ShardedAdamW& zero, const std::vector<torch::Tensor>& params, int from, int to) {
  const int rank = Comm()->rank();
  for (int step = from; step < to; ++step) {
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].mutable_grad() = LocalGrad(rank, step, i);
    }
    zero.ReduceGradients();
    zero.Step(Lr(step));
  }
}

void ExpectParamsEqual(const std::vector<torch::Tensor>& got,
                       const std::vector<torch::Tensor>& want, const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(torch::equal(got[i], want[i]))
        << what << ": " << kShapes[i].name << " differs by "
        << (got[i] - want[i]).abs().max().item<double>() << " on rank " << Comm()->rank();
  }
}

TEST(ZeroTest, ShardedUpdateEqualsTheUnshardedOneBitwise) {
  const int world = Comm()->size();
  std::vector<torch::Tensor> params = InitialParams();
  ShardedAdamW zero(Named(params), Config(), Comm().get());
  Reference ref;
  ASSERT_EQ(zero.numel(), 133);
  ASSERT_EQ(zero.shard_size(), (133 + world - 1) / world);
  for (int step = 0; step < kSteps; ++step) {
    Train(zero, params, step, step + 1);
    ref.Step(step, world);
    ExpectParamsEqual(params, ref.params, "step " + std::to_string(step));
  }
  // This rank's moments are the reference's flat elements it owns.
  const auto [m, v] = ref.FlatMoments();
  const OptimizerRange shard = zero.Shard();
  EXPECT_EQ(shard.step, kSteps);
  EXPECT_TRUE(torch::equal(shard.exp_avg, m.narrow(0, shard.begin, shard.exp_avg.numel())));
  EXPECT_TRUE(torch::equal(shard.exp_avg_sq, v.narrow(0, shard.begin, shard.exp_avg_sq.numel())));
}

TEST(ZeroTest, GradNormIsTheNormOfTheSummedGradient) {
  const int world = Comm()->size();
  std::vector<torch::Tensor> params = InitialParams();
  ShardedAdamW zero(Named(params), Config(), Comm().get());
  std::vector<torch::Tensor> sums;
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].mutable_grad() = LocalGrad(Comm()->rank(), 0, i);
    torch::Tensor sum = torch::zeros(kShapes[i].sizes, torch::kFloat64);
    for (int r = 0; r < world; ++r) sum += LocalGrad(r, 0, i);
    sums.push_back(sum.reshape({-1}));
  }
  zero.ReduceGradients();
  const double want = torch::cat(sums).norm().item<double>();
  EXPECT_NEAR(zero.GradNorm().item<double>(), want, 1e-12 * want);
  // A non-finite element on one rank makes the norm non-finite on every rank.
  if (Comm()->rank() == world - 1) zero.grad_shard()[0] = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(std::isfinite(zero.GradNorm().item<double>()));
}

// Memory for the moments: 2·ceil(P/W) elements per rank, against 2·P unsharded.
TEST(ZeroTest, StateBytesFallAsOneOverW) {
  const int world = Comm()->size();
  std::vector<torch::Tensor> params;
  std::vector<ZeroParam> named;
  // A model-sized layout: 10 M fp32 elements in uneven parameters.
  for (int64_t n : {4000000, 3333333, 2666667, 1}) {
    params.push_back(torch::zeros({n}, torch::kFloat32).requires_grad_(true));
    named.push_back({"p" + std::to_string(n) + ".weight", params.back(), true});
  }
  ShardedAdamW zero(named, Config(), Comm().get());
  const int64_t unsharded = zero.unsharded_state_bytes();
  EXPECT_EQ(unsharded, 2 * 10000001LL * 4);
  EXPECT_EQ(zero.state_bytes(), 2 * ((10000001LL + world - 1) / world) * 4);
  EXPECT_LE(zero.state_bytes(), unsharded / world + 2 * 4);
  if (Comm()->rank() == 0) {
    std::printf("W=%d: optimizer state per rank %.2f MiB (unsharded %.2f MiB, ratio 1/%.3f)\n",
                world, zero.state_bytes() / 1048576.0, unsharded / 1048576.0,
                static_cast<double>(unsharded) / zero.state_bytes());
  }
}

// The shards of this W, written as a checkpoint holds them, read back as the
// ranks of W' = 1..5 (and a run without ZeRO) would own them; and a restored
// optimizer continues as the uninterrupted one.
TEST(ZeroTest, ShardsReshardOntoAnotherWorldSize) {
  const int world = Comm()->size();
  const int rank = Comm()->rank();
  std::vector<torch::Tensor> params = InitialParams();
  ShardedAdamW zero(Named(params), Config(), Comm().get());
  Reference ref;
  Train(zero, params, 0, 3);
  for (int step = 0; step < 3; ++step) ref.Step(step, world);
  const auto layout = ZeroLayout(zero.params());
  const auto [m, v] = ref.FlatMoments();

  // One folder for all ranks (rank 0's name, broadcast as bytes).
  const std::string dir =
      HostBroadcastBytes(rank == 0 ? testing::MakeTempDir() : "", 0, *Comm(), torch::kCPU);
  ASSERT_TRUE(
      WriteTensors(dir + "/" + OptimizerShardName(rank), OptimizerShardTensors(zero.Shard())).ok());
  if (rank == 0) {
    std::map<std::string, torch::Tensor> full;  // optimizer.safetensors of an unsharded run
    for (size_t i = 0; i < ref.params.size(); ++i) {
      auto& s = static_cast<torch::optim::AdamWParamState&>(
          *ref.adamw->state()[ref.params[i].unsafeGetTensorImpl()]);
      full[std::string(kShapes[i].name) + ".exp_avg"] = s.exp_avg();
      full[std::string(kShapes[i].name) + ".exp_avg_sq"] = s.exp_avg_sq();
      full[std::string(kShapes[i].name) + ".step"] = torch::full({}, s.step(), torch::kInt64);
    }
    ASSERT_TRUE(WriteTensors(dir + "/" + kOptimizerFile, full).ok());
  }
  Comm()->Barrier();

  const int64_t total = zero.numel();
  for (int saved : {world, 0}) {
    for (int other = 1; other <= 5; ++other) {
      const int64_t shard = (total + other - 1) / other;
      for (int r = 0; r < other; ++r) {
        const int64_t begin = std::min(total, r * shard), end = std::min(total, begin + shard);
        auto range = ReadOptimizerRange(dir, layout, layout, saved, zero.shard_size(), begin, end,
                                        torch::kFloat64);
        ASSERT_TRUE(range.ok()) << range.status();
        const std::string what = "saved by " + std::to_string(saved) + " ranks, read as rank " +
                                 std::to_string(r) + " of " + std::to_string(other);
        EXPECT_EQ(range->step, 3) << what;
        EXPECT_TRUE(torch::equal(range->exp_avg, m.narrow(0, begin, end - begin))) << what;
        EXPECT_TRUE(torch::equal(range->exp_avg_sq, v.narrow(0, begin, end - begin))) << what;
      }
    }
  }
  // Another model's layout is refused, naming the parameter.
  auto other_layout = layout;
  other_layout[3].second += 1;
  auto refused = ReadOptimizerRange(dir, other_layout, layout, world, zero.shard_size(), 0, 1,
                                    torch::kFloat64);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("d.weight"), std::string::npos)
      << refused.status();

  // Restored at this W into a fresh optimizer over the same values, two more
  // steps equal the reference's next two.
  std::vector<torch::Tensor> copies;
  for (const torch::Tensor& p : params) copies.push_back(p.detach().clone().requires_grad_(true));
  ShardedAdamW restored(Named(copies), Config(), Comm().get());
  const int64_t begin = restored.shard_begin();
  auto mine = ReadOptimizerRange(dir, layout, layout, world, zero.shard_size(), begin,
                                 std::min(total, begin + restored.shard_size()), torch::kFloat64);
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_TRUE(restored.Restore(*mine).ok());
  Train(restored, copies, 3, 5);
  for (int step = 3; step < 5; ++step) ref.Step(step, world);
  ExpectParamsEqual(copies, ref.params, "after the restore");
  Comm()->Barrier();
  if (rank == 0) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace clipscale
