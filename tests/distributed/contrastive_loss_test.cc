// The tiled losses against the naive full-matrix losses (OpenCLIP's formulas,
// differentiated by autograd) on one rank, plus a memory bound on the tiling.
#include "distributed/contrastive_loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/autograd.h>

#include <barrier>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "distributed/local_communicator.h"

namespace clipscale {
namespace {

struct Inputs {
  at::Tensor x, y, t, b;  // leaves that require grad
};

// Row-normalised random embeddings; `duplicate` repeats pairs and single sides.
Inputs MakeInputs(int64_t n, int64_t d, double scale, at::ScalarType dtype, bool duplicate,
                  uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor x = at::randn({n, d}, gen, at::kDouble);
  at::Tensor y = at::randn({n, d}, gen, at::kDouble);
  if (duplicate && n >= 6) {
    x[5].copy_(x[1]);
    y[5].copy_(y[1]);  // a duplicated pair
    x[4].copy_(x[2]);  // a duplicated image with a different text
    y[3].copy_(x[0]);  // a text equal to another row's image
  }
  x = x / x.norm(2, {1}, true);
  y = y / y.norm(2, {1}, true);
  auto leaf = [&](const at::Tensor& v) { return v.to(dtype).detach().requires_grad_(true); };
  return {leaf(x), leaf(y), leaf(at::scalar_tensor(std::log(scale), at::kDouble)),
          leaf(at::scalar_tensor(-10.0, at::kDouble))};
}

Inputs CloneLeaves(const Inputs& in, at::ScalarType dtype) {
  auto leaf = [&](const at::Tensor& v) { return v.detach().to(dtype).requires_grad_(true); };
  return {leaf(in.x), leaf(in.y), leaf(in.t), leaf(in.b)};
}

// OpenCLIP ClipLoss with world_size 1: (CE(S) + CE(Sᵀ)) / 2.
at::Tensor NaiveClip(const Inputs& in) {
  const at::Tensor s = in.t.exp().to(in.x.scalar_type()) * at::mm(in.x, in.y.t());
  const at::Tensor labels = at::arange(s.size(0), at::kLong);
  return (at::cross_entropy_loss(s, labels) + at::cross_entropy_loss(s.t(), labels)) / 2;
}

// OpenCLIP SigLipLoss with world_size 1.
at::Tensor NaiveSigLip(const Inputs& in) {
  const at::ScalarType dt = in.x.scalar_type();
  const at::Tensor l = in.t.exp().to(dt) * at::mm(in.x, in.y.t()) + in.b.to(dt);
  const at::Tensor z = 2 * at::eye(l.size(0), l.options()) - 1;
  return -at::log_sigmoid(z * l).sum() / l.size(0);
}

// Relative to the largest reference entry, or to `floor` where the reference
// vanishes (N = 1: the only logit is the positive, CLIP's loss and gradients are 0).
double MaxRelDiff(const at::Tensor& a, const at::Tensor& ref, double floor) {
  const at::Tensor r = ref.to(at::kDouble);
  const double denom = std::max(r.abs().max().item<double>(), floor);
  return (a.to(at::kDouble) - r).abs().max().item<double>() / denom;
}

// Runs `loss` forward and backward; returns {loss, gx, gy, gt, gb}.
template <class F>
std::vector<at::Tensor> LossAndGrads(const Inputs& in, F&& loss, bool with_bias) {
  at::Tensor value = loss(in);
  std::vector<at::Tensor> wrt = {in.x, in.y, in.t};
  if (with_bias) wrt.push_back(in.b);
  std::vector<at::Tensor> grads = torch::autograd::grad({value}, wrt);
  grads.insert(grads.begin(), value.detach());
  return grads;
}

enum class Kind { kClip, kSigLip };

struct Case {
  Kind kind;
  at::ScalarType dtype;
  int64_t n, d, tile;
  double scale;
  bool duplicate;
};

std::vector<at::Tensor> RunTiled(const Case& c, const Inputs& in) {
  LocalCommunicator comm;
  if (c.kind == Kind::kClip) {
    return LossAndGrads(
        in, [&](const Inputs& v) { return TiledClipLoss(v.x, v.y, v.t, &comm, c.tile); }, false);
  }
  return LossAndGrads(
      in, [&](const Inputs& v) { return TiledSigLipLoss(v.x, v.y, v.t, v.b, &comm, c.tile); },
      true);
}

std::vector<at::Tensor> RunNaive(const Case& c, const Inputs& in) {
  if (c.kind == Kind::kClip) return LossAndGrads(in, NaiveClip, false);
  return LossAndGrads(in, NaiveSigLip, true);
}

class ContrastiveLossTest : public ::testing::TestWithParam<Case> {};

// fp64: both sides sum the same terms in different orders, so they agree to a
// few hundred ulps of the largest term; 1e-10 relative leaves ample margin.
// fp32: the reference is the fp64 loss of the same (fp32-rounded) inputs, and
// the fp32 naive loss is held to the same bound, so the tiled loss is shown to
// be as accurate as the full-matrix one. A logit carries an fp32 rounding error
// of about s·ε·√d (ε = 6e-8, d = 32), and exp(S − LSE) turns it into a relative
// error of the softmax weights, so errors relative to the gradient scale grow
// with s: ~6e-7 at s = 14 and ~2e-6 at s = 100 for both implementations here.
// 5e-6·max(1, s/10) keeps a 10× margin over that and is still ~100× below any
// real mistake (a missing term or a wrong tile edge moves values by ≥ 1/N).
TEST_P(ContrastiveLossTest, MatchesFullMatrixLossAndGradients) {
  const Case& c = GetParam();
  const Inputs in = MakeInputs(c.n, c.d, c.scale, c.dtype, c.duplicate, 1000 + c.n + c.tile);
  const std::vector<at::Tensor> tiled = RunTiled(c, CloneLeaves(in, c.dtype));
  const std::vector<at::Tensor> exact = RunNaive(c, CloneLeaves(in, at::kDouble));
  const double tol = c.dtype == at::kDouble ? 1e-10 : 5e-6 * std::max(1.0, c.scale / 10);
  std::vector<at::Tensor> naive_same_dtype;
  if (c.dtype != at::kDouble) naive_same_dtype = RunNaive(c, CloneLeaves(in, c.dtype));
  const char* names[] = {"loss", "d image", "d text", "d logit_scale", "d logit_bias"};
  for (size_t k = 0; k < exact.size(); ++k) {
    const double floor = k == 0 ? 1.0 : c.scale / c.n;  // natural scales of L and ∂L
    ASSERT_TRUE(tiled[k].isfinite().all().item<bool>()) << names[k];
    EXPECT_EQ(tiled[k].sizes(), exact[k].sizes()) << names[k];
    // Every leaf here has the case's dtype, and so has each gradient and the loss.
    EXPECT_EQ(tiled[k].scalar_type(), c.dtype) << names[k];
    EXPECT_LE(MaxRelDiff(tiled[k], exact[k], floor), tol) << names[k];
    if (!naive_same_dtype.empty()) {
      EXPECT_LE(MaxRelDiff(naive_same_dtype[k], exact[k], floor), tol) << names[k] << " (naive)";
    }
  }
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (Kind kind : {Kind::kClip, Kind::kSigLip}) {
    for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
      // Tiles of 1, tiles that do not divide N, one tile, a tile larger than N.
      for (auto [n, tile] : {std::pair<int64_t, int64_t>{1, 4},
                             {7, 1},
                             {7, 3},
                             {64, 16},
                             {100, 32},
                             {100, 100},
                             {100, 256},
                             {257, 64}}) {
        cases.push_back({kind, dtype, n, 32, tile, 1 / 0.07, false});
      }
      cases.push_back({kind, dtype, 100, 32, 24, 100.0, false});
      cases.push_back({kind, dtype, 100, 32, 24, 100.0, true});
      cases.push_back({kind, dtype, 33, 8, 5, 1.0, true});
    }
  }
  return cases;
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return std::string(c.kind == Kind::kClip ? "Clip" : "SigLip") +
         (c.dtype == at::kDouble ? "F64" : "F32") + "_N" + std::to_string(c.n) + "_T" +
         std::to_string(c.tile) + "_S" + std::to_string(int(c.scale)) + (c.duplicate ? "_Dup" : "");
}

INSTANTIATE_TEST_SUITE_P(Tiles, ContrastiveLossTest, ::testing::ValuesIn(AllCases()), CaseName);

// Linux keeps the peak RSS (VmHWM) per process; writing 5 to clear_refs resets
// it to the current RSS, so one test can measure its own peak in any order.
void ResetPeakRss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.close();
  ASSERT_TRUE(clear.good()) << "cannot reset the peak RSS via /proc/self/clear_refs";
}

int64_t ProcStatusBytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1)) * 1024;
  }
  ADD_FAILURE() << key << " missing from /proc/self/status";
  return 0;
}

// Peak RSS growth while running `f`.
template <class F>
int64_t PeakGrowth(F&& f) {
  // Free heap kept by malloc would let `f` reuse it unseen; give it back first.
  malloc_trim(0);
  ResetPeakRss();
  const int64_t base = ProcStatusBytes("VmRSS");
  f();
  return ProcStatusBytes("VmHWM") - base;
}

// N = 8192 in fp32: one N×N logit matrix is 256 MiB, and the naive loss with
// autograd holds several. Tiled with one rank, forward and backward hold only
// the two N×d gradients they return (8 MiB each at d = 256), two or three
// 1 MiB tiles and O(N) vectors (seen: 23.9 MiB CLIP, 19.4 MiB SigLIP; the
// rest is GEMM packing buffers and 2 MiB huge-page rounding). The bound — the
// gradients, four tiles and 8 MiB of slack, 28 MiB — fails for one extra N×d
// copy (a gathered or scaled input) or a 32nd of a logit matrix. The probe
// itself is checked on a real N×N allocation. bf16 inputs: the gradients are
// accumulated in fp32 and returned in bf16 (4 MiB each), so the bound grows
// by those 8 MiB to 36 MiB; one whole fp32 upcast of the image or the text
// embeddings (8 MiB each) would use up the slack.
TEST(ContrastiveLossMemoryTest, ForwardAndBackwardHoldOnlyTheGradientsAndTiles) {
  constexpr int64_t kN = 8192, kD = 256, kTile = 512;
  constexpr int64_t kLogitBytes = kN * kN * 4;
  LocalCommunicator comm;
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const int64_t low_grads = dtype == at::kFloat ? 0 : 2 * kN * kD * 2;
    const int64_t bound = 2 * kN * kD * 4 + low_grads + 4 * kTile * kTile * 4 + (8 << 20);
    for (Kind kind : {Kind::kClip, Kind::kSigLip}) {
      const Case c{kind, dtype, kN, kD, kTile, 100.0, false};
      const Inputs warm = MakeInputs(64, kD, c.scale, dtype, false, 1);
      RunTiled(Case{kind, dtype, 64, kD, 16, 100.0, false}, warm);  // thread pools etc.
      const Inputs in = MakeInputs(kN, kD, c.scale, dtype, false, 2);
      std::vector<at::Tensor> out;
      const int64_t growth = PeakGrowth([&] { out = RunTiled(c, in); });
      EXPECT_LT(growth, bound) << (kind == Kind::kClip ? "CLIP " : "SigLIP ") << dtype;
      for (const at::Tensor& v : out) EXPECT_TRUE(v.isfinite().all().item<bool>());
      std::printf(
          "%s %s N=%lld d=%lld tile=%lld: peak RSS growth %.1f MiB, bound %.1f MiB (one logit "
          "matrix: %lld MiB)\n",
          kind == Kind::kClip ? "CLIP" : "SigLIP", c10::toString(dtype), static_cast<long long>(kN),
          static_cast<long long>(kD), static_cast<long long>(kTile), growth / 1048576.0,
          bound / 1048576.0, static_cast<long long>(kLogitBytes >> 20));
    }
  }
  const int64_t control = PeakGrowth([&] { at::ones({kN, kN}, at::kFloat); });
  EXPECT_GE(control, kLogitBytes * 9 / 10) << "the RSS probe does not see an N×N allocation";
}

// W ranks as W threads of this process, so the cross-rank algebra (column LSE
// merge, reduce-scatter of text gradients, the SUM convention for the scalars)
// is tested without MPI. Each collective publishes into a slot, meets at a
// barrier, reads every slot, and meets again before slots may be reused.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : slots_(size), barrier_(size) {}
  int size() const { return static_cast<int>(slots_.size()); }
  std::vector<at::Tensor> Exchange(int rank, at::Tensor value) {
    slots_[rank] = std::move(value);
    barrier_.arrive_and_wait();
    std::vector<at::Tensor> all(slots_.begin(), slots_.end());
    barrier_.arrive_and_wait();
    return all;
  }
  void Wait() { barrier_.arrive_and_wait(); }

 private:
  std::vector<at::Tensor> slots_;
  std::barrier<> barrier_;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(ThreadGroup* group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  int local_rank() const override { return rank_; }
  std::string backend() const override { return "threads"; }
  torch::Tensor AllGather(const torch::Tensor& input) override {
    return at::cat(group_->Exchange(rank_, input.clone()), 0);
  }
  torch::Tensor ReduceScatter(const torch::Tensor& input) override {
    at::Tensor sum = at::stack(group_->Exchange(rank_, input.clone()), 0).sum(0);
    return sum.chunk(size(), 0)[rank_].clone();
  }
  void AllReduce(torch::Tensor& tensor, ReduceOp op) override {
    at::Tensor all = at::stack(group_->Exchange(rank_, tensor.clone()), 0);
    tensor.copy_(op == ReduceOp::kSum ? all.sum(0) : std::get<0>(all.max(0)));
  }
  std::unique_ptr<CommWork> AllReduceAsync(torch::Tensor& tensor, ReduceOp op) override {
    AllReduce(tensor, op);
    return nullptr;  // not used by the losses
  }
  void Broadcast(torch::Tensor& tensor, int root) override {
    tensor.copy_(group_->Exchange(rank_, tensor.clone())[root]);
  }
  void Barrier() override { group_->Wait(); }

 private:
  ThreadGroup* group_;
  int rank_;
};

// Every rank returns the global loss; image/text gradients are the rows of the
// one-process gradients; the scalar gradients sum to them over ranks. fp64 and
// the 1e-10 bound argued above; n = 5 with tiles of 2 and 4 cross rank edges.
TEST(ContrastiveLossMultiRankTest, ThreeRanksMatchOneProcessOverTheGlobalBatch) {
  constexpr int kW = 3;
  constexpr int64_t kLocal = 5, kD = 8;
  for (Kind kind : {Kind::kClip, Kind::kSigLip}) {
    for (int64_t tile : {2, 4}) {
      const Case c{kind, at::kDouble, kW * kLocal, kD, tile, 100.0, true};
      const Inputs in = MakeInputs(c.n, kD, c.scale, at::kDouble, true, 7 + tile);
      const std::vector<at::Tensor> exact = RunNaive(c, CloneLeaves(in, at::kDouble));
      ThreadGroup group(kW);
      std::vector<std::vector<at::Tensor>> per_rank(kW);
      std::vector<std::thread> threads;
      for (int r = 0; r < kW; ++r) {
        threads.emplace_back([&, r] {
          ThreadCommunicator comm(&group, r);
          Inputs mine = CloneLeaves(in, at::kDouble);
          auto rows = [&](const at::Tensor& v) {
            return v.detach().slice(0, r * kLocal, (r + 1) * kLocal).clone().requires_grad_(true);
          };
          mine.x = rows(in.x);
          mine.y = rows(in.y);
          if (kind == Kind::kClip) {
            per_rank[r] = LossAndGrads(
                mine, [&](const Inputs& v) { return TiledClipLoss(v.x, v.y, v.t, &comm, tile); },
                false);
          } else {
            per_rank[r] = LossAndGrads(
                mine,
                [&](const Inputs& v) { return TiledSigLipLoss(v.x, v.y, v.t, v.b, &comm, tile); },
                true);
          }
        });
      }
      for (std::thread& t : threads) t.join();
      const std::string what =
          std::string(kind == Kind::kClip ? "CLIP" : "SigLIP") + " tile " + std::to_string(tile);
      std::vector<at::Tensor> summed(exact.size());
      for (int r = 0; r < kW; ++r) {
        EXPECT_LE(MaxRelDiff(per_rank[r][0], exact[0], 1.0), 1e-10) << what << " loss, rank " << r;
        for (int k : {1, 2}) {
          EXPECT_LE(MaxRelDiff(per_rank[r][k], exact[k].slice(0, r * kLocal, (r + 1) * kLocal),
                               c.scale / c.n),
                    1e-10)
              << what << " rows of grad " << k << ", rank " << r;
        }
        for (size_t k = 3; k < exact.size(); ++k) {
          summed[k] = r == 0 ? per_rank[r][k].clone() : summed[k] + per_rank[r][k];
        }
      }
      for (size_t k = 3; k < exact.size(); ++k) {
        EXPECT_LE(MaxRelDiff(summed[k], exact[k], c.scale / c.n), 1e-10) << what << " grad " << k;
      }
    }
  }
}


// The tiled loss over W ranks as W threads, each holding its rows of `in`:
// {loss, ∂x, ∂y (rows concatenated), ∂logit_scale, ∂logit_bias (summed over
// ranks, as the SUM all-reduce will)}. One rank runs on LocalCommunicator.
std::vector<at::Tensor> RunRanks(Kind kind, const Inputs& in, int world, int64_t tile) {
  const int64_t local = in.x.size(0) / world;
  std::vector<std::vector<at::Tensor>> per_rank(world);
  auto run = [&](Communicator& comm, int r) {
    auto rows = [&](const at::Tensor& v) {
      return v.detach().slice(0, r * local, (r + 1) * local).clone().requires_grad_(true);
    };
    auto scalar = [](const at::Tensor& v) { return v.detach().clone().requires_grad_(true); };
    const Inputs mine{rows(in.x), rows(in.y), scalar(in.t), scalar(in.b)};
    if (kind == Kind::kClip) {
      per_rank[r] = LossAndGrads(
          mine, [&](const Inputs& v) { return TiledClipLoss(v.x, v.y, v.t, &comm, tile); }, false);
    } else {
      per_rank[r] = LossAndGrads(
          mine, [&](const Inputs& v) { return TiledSigLipLoss(v.x, v.y, v.t, v.b, &comm, tile); },
          true);
    }
  };
  if (world == 1) {
    LocalCommunicator comm;
    run(comm, 0);
  } else {
    ThreadGroup group(world);
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r) {
      threads.emplace_back([&, r] {
        ThreadCommunicator comm(&group, r);
        run(comm, r);
      });
    }
    for (std::thread& t : threads) t.join();
  }
  std::vector<at::Tensor> out = {per_rank[0][0]};
  for (size_t k = 1; k < per_rank[0].size(); ++k) {
    std::vector<at::Tensor> parts;
    for (int r = 0; r < world; ++r) parts.push_back(per_rank[r][k]);
    out.push_back(k <= 2 ? at::cat(parts) : at::stack(parts).sum(0));
  }
  return out;
}

// bf16/fp16 embeddings (what the towers give under autocast) are gathered in
// their own dtype and upcast block by block; since the upcast is exact, the
// loss must be the fp32 loss of the same rounded values, computed in the same
// fp32 arithmetic. Derived tolerances:
//  - loss and the scalars' gradients: the fp32 bound of the test above,
//    5e-6·max(1, s/10), which only GEMM summation order may use up; a logit
//    rounded to bf16 anywhere (e.g. s·x formed in bf16) moves the loss by
//    about s·2^-9 relative (0.2 at s = 100), 10^4 times more;
//  - ∂x, ∂y, returned in the inputs' dtype: the fp32 gradient rounded once,
//    so |g − g_fp32| ≤ u·|g_fp32| elementwise with the unit roundoff u = 2^-8
//    (bf16) or 2^-11 (fp16), plus the same fp32 bound on the gradient scale.
TEST(ContrastiveLossLowPrecisionTest, Bf16AndFp16InputsGiveTheFp32LossOfTheRoundedValues) {
  for (Kind kind : {Kind::kClip, Kind::kSigLip}) {
    for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
      for (int world : {1, 3}) {
        for (auto [n, tile, scale] : {std::tuple<int64_t, int64_t, double>{96, 32, 100.0},
                                      {99, 16, 1 / 0.07},
                                      {21, 4, 1.0}}) {
          const std::string what = std::string(kind == Kind::kClip ? "CLIP" : "SigLIP") + " " +
                                   c10::toString(dtype) + " W=" + std::to_string(world) +
                                   " N=" + std::to_string(n) + " tile=" + std::to_string(tile);
          const Inputs in = MakeInputs(n, 32, scale, at::kFloat, true, 50 + n + world);
          // Embeddings in the low dtype; the log scale and bias stay fp32 parameters.
          Inputs low = in, rounded = in;
          low.x = in.x.detach().to(dtype);
          low.y = in.y.detach().to(dtype);
          rounded.x = low.x.to(at::kFloat);
          rounded.y = low.y.to(at::kFloat);
          const std::vector<at::Tensor> got = RunRanks(kind, low, world, tile);
          const std::vector<at::Tensor> ref = RunRanks(kind, rounded, world, tile);
          const double tol = 5e-6 * std::max(1.0, scale / 10);
          const double u = dtype == at::kBFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
          EXPECT_EQ(got[0].scalar_type(), at::kFloat) << what;
          EXPECT_LE(MaxRelDiff(got[0], ref[0], 1.0), tol) << what << " loss";
          for (size_t k = 1; k < got.size(); ++k) {
            const double floor = scale / n;
            if (k <= 2) {
              EXPECT_EQ(got[k].scalar_type(), dtype) << what << " grad " << k;
              const at::Tensor r = ref[k].to(at::kDouble);
              const double scale_of_grad = std::max(r.abs().max().item<double>(), floor);
              const at::Tensor excess = (got[k].to(at::kDouble) - r).abs() - u * r.abs();
              EXPECT_LE(excess.max().item<double>() / scale_of_grad, tol) << what << " grad " << k;
            } else {
              EXPECT_LE(MaxRelDiff(got[k], ref[k], floor), tol) << what << " grad " << k;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace clipscale
