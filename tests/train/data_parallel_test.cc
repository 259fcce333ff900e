// The data-parallel contract, run by ctest under mpiexec with W = 1, 2 and 4
// ranks: for every micro-batch size, the loss and every parameter gradient
// after ComputeGradients (tiled loss over the all-gathered batch, grad cache,
// bucketed SUM all-reduce) equal those of ONE process computing the
// full-matrix loss over the whole global batch. Every rank builds that
// reference itself, in-process, from the same global batch. After K optimizer
// steps the replicas are bitwise identical.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>

#include "core/status.h"
#include "distributed/autograd_collectives.h"
#include "distributed/launch_env.h"
#include "models/clip_model.h"
#include "tests/mpi_environment.h"
#include "train/data_parallel.h"
#include "train/metrics.h"
#include "train/optimizer.h"

namespace clipscale {
namespace {

using testing::Comm;

constexpr int64_t kGlobalBatch = 16;  // divisible by W = 1, 2, 4
constexpr int64_t kVocab = 500;
constexpr int64_t kContext = 12;

ModelConfig SmallConfig(double patch_dropout = 0.0, bool bias = false) {
  auto config = LoadModelConfig(
      "tiny", {"embed_dim=32", "vision.image_size=32", "vision.width=64", "vision.head_width=32",
               "vision.layers=2", "text.width=64", "text.heads=2", "text.layers=2",
               "text.vocab_size=" + std::to_string(kVocab),
               "text.context_length=" + std::to_string(kContext)});
  CS_CHECK_OK(config.status());
  config->vision.patch_dropout = patch_dropout;
  if (bias) {  // OpenCLIP's SigLIP initialisation
    config->init_logit_scale = std::log(10.0);
    config->init_logit_bias = -10.0;
  }
  return *config;
}

// Duplicated samples (same image, same caption) as (copy, original). With
// W = 2 (rows 0-7 | 8-15) and W = 4 (0-3 | 4-7 | 8-11 | 12-15), the pairs
// (3, 1) and (15, 13) sit on one rank and (9, 2) and (14, 5) on two; with
// W = 1 all of them share the rank. DuplicatesSitOnTheSameAndOnOtherRanks
// checks this for the W it runs with.
constexpr std::pair<int64_t, int64_t> kDuplicates[] = {{3, 1}, {15, 13}, {9, 2}, {14, 5}};

// The same global batch on every rank, with the duplicates above.
struct GlobalBatch {
  torch::Tensor images, tokens;
};
GlobalBatch MakeGlobalBatch(torch::ScalarType dtype) {
  torch::manual_seed(1234);
  GlobalBatch b;
  b.images = torch::randn({kGlobalBatch, 3, 32, 32}, torch::kFloat64).to(dtype);
  b.tokens = torch::randint(1, kVocab - 1, {kGlobalBatch, kContext}, torch::kInt64);
  for (int64_t i = 0; i < kGlobalBatch; ++i) {
    const int64_t eot = 3 + i % (kContext - 3);  // captions of different lengths
    b.tokens[i][eot] = kVocab - 1;
    b.tokens[i].narrow(0, eot + 1, kContext - eot - 1).zero_();
  }
  for (auto [dup, orig] : kDuplicates) {
    b.images[dup].copy_(b.images[orig]);
    b.tokens[dup].copy_(b.tokens[orig]);
  }
  return b;
}

ClipModel MakeModel(const ModelConfig& config, torch::ScalarType dtype, double logit_scale) {
  torch::manual_seed(7);  // identical initial weights on every rank
  ClipModel model(config);
  model->to(dtype);
  model->train();
  torch::NoGradGuard no_grad;
  model->logit_scale().fill_(logit_scale);
  return model;
}

// −(1/N) Σ_ij log σ(z_ij (s x_i·y_j + b)), z = 2δ − 1: SigLIP over the full matrix.
torch::Tensor FullSigLipLoss(const torch::Tensor& x, const torch::Tensor& y,
                             const torch::Tensor& scale, const torch::Tensor& bias) {
  torch::Tensor logits = scale.exp() * x.matmul(y.t()) + bias;
  torch::Tensor z = 2 * torch::eye(x.size(0), x.options()) - 1;
  return -torch::log_sigmoid(z * logits).sum() / x.size(0);
}

using Grads = std::map<std::string, torch::Tensor>;

Grads CollectGrads(ClipModel& model) {
  Grads grads;
  for (const auto& p : model->named_parameters()) {
    if (p.value().requires_grad()) grads[p.key()] = p.value().grad().clone();
  }
  return grads;
}

// One process, full matrix, whole global batch.
double Reference(ClipModel& model, const GlobalBatch& batch, LossKind kind, bool lock_image,
                 Grads* grads) {
  model->zero_grad();
  torch::Tensor x;
  if (lock_image) {
    torch::NoGradGuard no_grad;
    x = model->EncodeImage(batch.images, true);
  } else {
    x = model->EncodeImage(batch.images, true);
  }
  torch::Tensor y = model->EncodeText(batch.tokens, true);
  torch::Tensor loss = kind == LossKind::kClip
                           ? ClipLoss(x, y, model->logit_scale().exp())
                           : FullSigLipLoss(x, y, model->logit_scale(), model->logit_bias());
  loss.backward();
  *grads = CollectGrads(model);
  return loss.item<double>();
}

struct Case {
  LossKind loss;
  double logit_scale;
  bool lock_image;
};

// Relative to the largest reference gradient entry of each tensor.
double MaxError(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = std::max(1e-30, b.abs().max().item<double>());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() / scale;
}

void CheckContract(const Case& c, torch::ScalarType dtype, double tolerance) {
  Communicator& comm = *Comm();
  const int64_t n = kGlobalBatch / comm.size();
  const ModelConfig config = SmallConfig(0.0, c.loss == LossKind::kSigLip);
  const GlobalBatch batch = MakeGlobalBatch(dtype);
  // The reference is always computed in fp64.
  ClipModel reference_model = MakeModel(config, torch::kFloat64, c.logit_scale);
  if (c.lock_image) {
    for (auto& p : reference_model->visual().parameters()) p.set_requires_grad(false);
  }
  Grads want;
  const double want_loss =
      Reference(reference_model, {batch.images.to(torch::kFloat64), batch.tokens}, c.loss,
                c.lock_image, &want);

  const torch::Tensor images = batch.images.narrow(0, comm.rank() * n, n);
  const torch::Tensor tokens = batch.tokens.narrow(0, comm.rank() * n, n);
  for (int64_t micro : {int64_t{0}, n / 2 + 1, int64_t{1}}) {
    SCOPED_TRACE(::testing::Message() << "W=" << comm.size() << " micro_batch=" << micro);
    ClipModel model = MakeModel(config, dtype, c.logit_scale);
    if (c.lock_image) {
      for (auto& p : model->visual().parameters()) p.set_requires_grad(false);
    }
    // Small buckets: many collectives, most launched from backward hooks.
    GradientReducer reducer(TrainableParameters(*model), &comm, 16 << 10);
    StepOptions options;
    options.loss = c.loss;
    options.micro_batch = micro;
    options.loss_tile = 3;  // several tiles, a ragged last one
    options.lock_image = c.lock_image;
    const double loss =
        ComputeGradients(model, images, tokens, comm, reducer, options).item<double>();
    EXPECT_NEAR(loss, want_loss, tolerance * std::abs(want_loss));
    const Grads got = CollectGrads(model);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0;
    std::string worst_name;
    for (const auto& [name, grad] : want) {
      ASSERT_TRUE(got.at(name).defined()) << name;
      const double error = MaxError(got.at(name), grad);
      if (error > worst) {
        worst = error;
        worst_name = name;
      }
      EXPECT_LE(error, tolerance) << name;
    }
    if (comm.size() > 1) {
      EXPECT_GT(reducer.num_buckets(), 2);
      EXPECT_GT(reducer.launched_during_backward(), 0);
    }
    if (comm.rank() == 0) {
      std::printf("W=%d %s scale=%.1f lock=%d micro=%lld %s: loss %.12g, worst grad error %.2e (%s)\n",
                  comm.size(), c.loss == LossKind::kClip ? "clip" : "siglip",
                  std::exp(c.logit_scale), c.lock_image, static_cast<long long>(micro),
                  dtype == torch::kFloat64 ? "fp64" : "fp32", loss, worst, worst_name.c_str());
    }
  }
}

// The batch the contract tests use has, for this W, duplicates within one
// rank and (for W > 1) duplicates across ranks, and they are real copies.
TEST(DataParallelContract, DuplicatesSitOnTheSameAndOnOtherRanks) {
  const int64_t n = kGlobalBatch / Comm()->size();
  int same = 0, across = 0;
  for (auto [dup, orig] : kDuplicates) ++(dup / n == orig / n ? same : across);
  EXPECT_GE(same, 2) << "W=" << Comm()->size();
  if (Comm()->size() > 1) EXPECT_GE(across, 2) << "W=" << Comm()->size();
  const GlobalBatch batch = MakeGlobalBatch(torch::kFloat64);
  for (auto [dup, orig] : kDuplicates) {
    EXPECT_TRUE(torch::equal(batch.images[dup], batch.images[orig])) << dup;
    EXPECT_TRUE(torch::equal(batch.tokens[dup], batch.tokens[orig])) << dup;
  }
}

TEST(DataParallelContract, ClipFp64) {
  CheckContract({LossKind::kClip, std::log(1 / 0.07), false}, torch::kFloat64, 1e-10);
}

TEST(DataParallelContract, ClipFp64LogitScale100) {
  CheckContract({LossKind::kClip, std::log(100.0), false}, torch::kFloat64, 1e-10);
}

TEST(DataParallelContract, ClipFp64LockedImageTower) {
  CheckContract({LossKind::kClip, std::log(100.0), true}, torch::kFloat64, 1e-10);
}

TEST(DataParallelContract, SigLipFp64) {
  CheckContract({LossKind::kSigLip, std::log(10.0), false}, torch::kFloat64, 1e-10);
}

TEST(DataParallelContract, SigLipFp64LogitScale100) {
  CheckContract({LossKind::kSigLip, std::log(100.0), false}, torch::kFloat64, 1e-10);
}

// fp32 against the fp64 reference. The fp32 model alone (same weights, one
// process, full matrix) differs from fp64 by ~1e-5 relative at scale 100: each
// logit carries ~1e-6 relative rounding from the encoders, multiplied by 100
// inside the softmax, and the smallest gradient entries (biases of the first
// layers) are sums of many such terms. The tiled path reorders the same fp32
// sums, so we allow 1e-3 relative to each tensor's largest entry: an order of
// magnitude above what we observe (printed), and far below what a wrong rank
// offset, a missing reduction (error ~1) or a 1/W factor (error ≥ 0.5) gives.
TEST(DataParallelContract, ClipFp32) {
  CheckContract({LossKind::kClip, std::log(100.0), false}, torch::kFloat32, 1e-3);
}

TEST(DataParallelContract, SigLipFp32) {
  CheckContract({LossKind::kSigLip, std::log(10.0), false}, torch::kFloat32, 1e-3);
}

// Grad cache with patch dropout: re-encoding a micro-batch must replay the
// masks of its no-grad pass. The reference encodes the same micro-batches
// once, with graph, from the same generator state.
TEST(DataParallelContract, GradCacheReplaysPatchDropout) {
  Communicator& comm = *Comm();
  const int64_t n = kGlobalBatch / comm.size();
  const int64_t micro = 2;
  const ModelConfig config = SmallConfig(/*patch_dropout=*/0.5);
  const GlobalBatch batch = MakeGlobalBatch(torch::kFloat64);
  const torch::Tensor images = batch.images.narrow(0, comm.rank() * n, n);
  const torch::Tensor tokens = batch.tokens.narrow(0, comm.rank() * n, n);
  const uint64_t seed = 100 + comm.rank();  // each rank draws its own masks

  auto uncached = [&](uint64_t rng_seed, Grads* grads) {
    ClipModel model = MakeModel(config, torch::kFloat64, std::log(100.0));
    torch::manual_seed(rng_seed);
    std::vector<torch::Tensor> xs, ys;
    for (int64_t k = 0; k < n; k += micro) {
      xs.push_back(model->EncodeImage(images.narrow(0, k, std::min(micro, n - k)), true));
      ys.push_back(model->EncodeText(tokens.narrow(0, k, std::min(micro, n - k)), true));
    }
    torch::Tensor loss = TiledClipLoss(torch::cat(xs), torch::cat(ys), model->logit_scale(), &comm);
    loss.backward();
    for (auto& p : model->parameters()) comm.AllReduce(p.mutable_grad(), ReduceOp::kSum);
    *grads = CollectGrads(model);
    return loss.item<double>();
  };
  Grads want, other_masks;
  const double want_loss = uncached(seed, &want);
  const double other_loss = uncached(seed + 1000, &other_masks);
  // The masks matter: other masks give another loss.
  EXPECT_GT(std::abs(want_loss - other_loss), 1e-6);

  ClipModel model = MakeModel(config, torch::kFloat64, std::log(100.0));
  GradientReducer reducer(TrainableParameters(*model), &comm);
  torch::manual_seed(seed);
  StepOptions options;
  options.micro_batch = micro;
  const double loss =
      ComputeGradients(model, images, tokens, comm, reducer, options).item<double>();
  EXPECT_NEAR(loss, want_loss, 1e-10 * std::abs(want_loss));
  for (const auto& [name, grad] : CollectGrads(model)) {
    EXPECT_LE(MaxError(grad, want.at(name)), 1e-10) << name;
  }
  // The generator ends where one pass over the micro-batches leaves it.
  Grads ignored;
  uncached(seed, &ignored);
  const torch::Tensor after_uncached = torch::randn({4});
  torch::manual_seed(seed);
  ClipModel again = MakeModel(config, torch::kFloat64, std::log(100.0));
  torch::manual_seed(seed);
  ComputeGradients(again, images, tokens, comm, reducer, options);
  EXPECT_TRUE(torch::equal(torch::randn({4}), after_uncached));
}

// K AdamW steps with grad clipping, patch dropout drawn differently on each
// rank, and grad caching: the replicas stay bitwise identical.
TEST(DataParallelContract, ReplicasBitwiseIdenticalAfterSteps) {
  Communicator& comm = *Comm();
  const int64_t n = kGlobalBatch / comm.size();
  ClipModel model = MakeModel(SmallConfig(0.3), torch::kFloat32, std::log(1 / 0.07));
  BroadcastModule(*model, comm);
  OptimizerConfig opt;
  opt.weight_decay = 0.1;
  auto optimizer = MakeAdamW(*model, opt);
  SetLearningRate(*optimizer, 1e-3);
  GradientReducer reducer(TrainableParameters(*model), &comm, 64 << 10);
  torch::manual_seed(55 + comm.rank());
  StepOptions options;
  options.micro_batch = 3;
  for (int step = 0; step < 4; ++step) {
    torch::manual_seed(900 + step);  // a different global batch each step, same on all ranks
    torch::Tensor images = torch::randn({kGlobalBatch, 3, 32, 32});
    torch::Tensor tokens = torch::randint(1, kVocab - 1, {kGlobalBatch, kContext});
    tokens.select(1, kContext - 1).fill_(kVocab - 1);
    torch::manual_seed(55 + comm.rank() + 10 * step);  // per-rank patch-dropout masks
    ComputeGradients(model, images.narrow(0, comm.rank() * n, n),
                     tokens.narrow(0, comm.rank() * n, n), comm, reducer, options);
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    optimizer->step();
  }
  EXPECT_TRUE(CheckReplicasIdentical(*model, comm).ok());
  // The same, spelled out: every rank's flattened weights equal rank 0's bitwise.
  std::vector<torch::Tensor> flat;
  for (const auto& p : model->parameters()) flat.push_back(p.detach().reshape({-1}));
  torch::Tensor mine = torch::cat(flat);
  torch::Tensor all = comm.AllGather(mine.unsqueeze(0));
  for (int r = 1; r < comm.size(); ++r) EXPECT_TRUE(torch::equal(all[r], all[0])) << "rank " << r;
  // And the check notices one flipped bit on one rank.
  if (comm.size() > 1) {
    torch::NoGradGuard no_grad;
    if (comm.rank() == comm.size() - 1) {
      torch::Tensor p = model->logit_scale();
      p.copy_(torch::nextafter(p, p + 1));
    }
    absl::Status status = CheckReplicasIdentical(*model, comm);
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.message().find(std::to_string(comm.size() - 1)), std::string::npos) << status;
  }
}

// The differentiable all-gather: rank r's loss L_r = Σ w_r ⊙ gather(x); the
// gradient each rank receives for its rows is Σ_r w_r over its block, the
// gradient of Σ_r L_r.
TEST(DataParallelContract, AllGatherWithGradSumsOverRanks) {
  Communicator& comm = *Comm();
  const int64_t n = 3, d = 5, big_n = n * comm.size();
  auto weights = [&](int r) {
    return torch::arange(big_n * d, torch::kFloat64).view({big_n, d}).mul(0.25 * (r + 1)).add(r);
  };
  torch::Tensor x = torch::randn({n, d}, torch::kFloat64).add(comm.rank()).requires_grad_(true);
  torch::Tensor gathered = AllGatherWithGrad(x, &comm);
  ASSERT_EQ(gathered.size(0), big_n);
  EXPECT_TRUE(torch::equal(gathered.narrow(0, comm.rank() * n, n), x.detach()));
  (gathered * weights(comm.rank())).sum().backward();
  torch::Tensor want = torch::zeros({n, d}, torch::kFloat64);
  for (int r = 0; r < comm.size(); ++r) want += weights(r).narrow(0, comm.rank() * n, n);
  EXPECT_TRUE(torch::allclose(x.grad(), want, 0, 1e-12)) << x.grad() << want;
}

// A ModifiedResNet image tower: its BatchNorm running statistics are per-rank
// state; broadcast from rank 0 before each step (as DDP does) the replicas
// stay identical, and without it they drift apart.
TEST(DataParallelContract, BatchNormBuffersFollowRankZero) {
  Communicator& comm = *Comm();
  const int64_t n = kGlobalBatch / comm.size();
  ModelConfig config = SmallConfig();
  config.vision.layers = {1, 1, 1, 1};
  config.vision.width = 8;
  config.vision.head_width = 8;
  for (bool broadcast : {true, false}) {
    if (!broadcast && comm.size() == 1) continue;
    ClipModel model = MakeModel(config, torch::kFloat32, std::log(1 / 0.07));
    BroadcastModule(*model, comm);
    auto optimizer = MakeAdamW(*model, OptimizerConfig());
    SetLearningRate(*optimizer, 1e-3);
    GradientReducer reducer(TrainableParameters(*model), &comm);
    for (int step = 0; step < 2; ++step) {
      torch::manual_seed(300 + step);
      torch::Tensor images = torch::randn({kGlobalBatch, 3, 32, 32});
      torch::Tensor tokens = torch::randint(1, kVocab - 1, {kGlobalBatch, kContext});
      tokens.select(1, kContext - 1).fill_(kVocab - 1);
      if (broadcast) {
        EXPECT_TRUE(BroadcastBuffers(*model, comm));
      }
      ComputeGradients(model, images.narrow(0, comm.rank() * n, n),
                       tokens.narrow(0, comm.rank() * n, n), comm, reducer, StepOptions());
      optimizer->step();
    }
    if (broadcast) BroadcastBuffers(*model, comm);
    EXPECT_EQ(CheckReplicasIdentical(*model, comm).ok(), broadcast);
  }
}

// After the first step the buckets follow the order in which backward
// actually finished the gradients (rank 0's, the same on every rank): in the
// next step every bucket but the last is launched from a hook, before
// backward returns, none is held back behind an earlier bucket still waiting
// for a gradient (with registration order 18 of 38 are, seen 2026-12-03:
// token_embedding is final only at the end of the text backward), and the
// gradients are unchanged by the new layout
// (bitwise for W <= 2, where each element's sum is one addition; to fp32
// rounding for W = 4, where MPI may associate differently per message size).
TEST(DataParallelContract, BucketsFollowTheObservedGradientOrder) {
  Communicator& comm = *Comm();
  const int64_t n = kGlobalBatch / comm.size();
  for (int64_t micro : {int64_t{0}, int64_t{3}}) {
    ClipModel model = MakeModel(SmallConfig(), torch::kFloat32, std::log(1 / 0.07));
    BroadcastModule(*model, comm);
    GradientReducer reducer(TrainableParameters(*model), &comm, 16 << 10);
    if (comm.size() == 1) {
      EXPECT_EQ(reducer.num_buckets(), 0) << "one rank: nothing to reduce";
      continue;
    }
    StepOptions options;
    options.micro_batch = micro;
    torch::manual_seed(77);
    const torch::Tensor images = torch::randn({kGlobalBatch, 3, 32, 32});
    torch::Tensor tokens = torch::randint(1, kVocab - 1, {kGlobalBatch, kContext});
    tokens.select(1, kContext - 1).fill_(kVocab - 1);
    std::vector<Grads> grads;
    std::vector<int64_t> launched, buckets, held_back;
    for (int step = 0; step < 2; ++step) {
      EXPECT_EQ(reducer.rebuilt(), step > 0);
      buckets.push_back(reducer.num_buckets());
      torch::manual_seed(5 + comm.rank());  // the same patch-dropout masks in both steps
      ComputeGradients(model, images.narrow(0, comm.rank() * n, n),
                       tokens.narrow(0, comm.rank() * n, n), comm, reducer, options);
      launched.push_back(reducer.launched_during_backward());
      held_back.push_back(reducer.held_back());
      grads.push_back(CollectGrads(model));
    }
    std::printf(
        "W=%d micro=%lld: buckets launched during backward (held back by an earlier "
        "one): %lld (%lld) of %lld in the first step (registration order), %lld (%lld) "
        "of %lld after the rebuild\n",
        comm.size(), static_cast<long long>(micro), static_cast<long long>(launched[0]),
        static_cast<long long>(held_back[0]), static_cast<long long>(buckets[0]),
        static_cast<long long>(launched[1]), static_cast<long long>(held_back[1]),
        static_cast<long long>(buckets[1]));
    EXPECT_TRUE(reducer.rebuilt());
    EXPECT_GT(buckets[1], 4);
    EXPECT_GE(launched[1], buckets[1] - 1) << "micro " << micro;
    EXPECT_EQ(held_back[1], 0) << "micro " << micro;
    // The order is a permutation of all parameters, identical on every rank.
    std::vector<int> sorted = reducer.order();
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i) ASSERT_EQ(sorted[i], static_cast<int>(i));
    torch::Tensor mine =
        torch::tensor(std::vector<int64_t>(reducer.order().begin(), reducer.order().end()));
    torch::Tensor all = comm.AllGather(mine.unsqueeze(0));
    for (int r = 1; r < comm.size(); ++r) EXPECT_TRUE(torch::equal(all[r], all[0])) << r;
    for (const auto& [name, g] : grads[0]) {
      if (comm.size() <= 2) {
        EXPECT_TRUE(torch::equal(grads[1].at(name), g)) << name;
      } else {
        EXPECT_TRUE(torch::allclose(grads[1].at(name), g, 1e-5, 1e-7)) << name;
      }
    }
    // A saved order is taken as is; anything but a permutation is refused.
    std::vector<int> reversed(reducer.order().rbegin(), reducer.order().rend());
    EXPECT_TRUE(reducer.SetOrder(reversed));
    EXPECT_EQ(reducer.order(), reversed);
    EXPECT_FALSE(reducer.SetOrder({0, 0}));
  }
}

}  // namespace
}  // namespace clipscale
