// AdamW step time: clipscale's FusedAdamW against torch::optim::AdamW (its
// baseline, the same math and state), both measured in this run on copies of
// the same parameters and gradients, interleaved so that drift on a shared
// machine hits both alike. The ratio is what to quote.
//
//   optimizer_bench [--model tiny] [--threads 2] [--rounds 5] [--steps 10]
#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "models/clip_model.h"
#include "train/optimizer.h"

namespace {

struct Params {
  std::vector<torch::Tensor> decay, no_decay;
};

// Fresh fp32 leaves with the same values and gradients for every copy.
Params CopyWithGrads(const clipscale::ParameterGroups& groups) {
  auto leaf = [](const torch::Tensor& t) {
    torch::Tensor p = t.detach().to(torch::kFloat).clone().set_requires_grad(true);
    torch::manual_seed(p.numel());  // the same gradient for the same parameter in every copy
    p.mutable_grad() = torch::randn_like(p);
    return p;
  };
  Params params;
  for (const auto& t : groups.decay) params.decay.push_back(leaf(t));
  for (const auto& t : groups.no_decay) params.no_decay.push_back(leaf(t));
  return params;
}

template <class Optimizer>
std::unique_ptr<Optimizer> Make(const Params& params) {
  auto optimizer = std::make_unique<Optimizer>(
      clipscale::AdamWParamGroups(params.decay, params.no_decay, clipscale::OptimizerConfig()),
      torch::optim::AdamWOptions(0.0));
  clipscale::SetLearningRate(*optimizer, 1e-4);
  return optimizer;
}

double MillisecondsPerStep(torch::optim::Optimizer& optimizer, int steps) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) optimizer.step();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
             .count() /
         steps;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_name = "tiny";
  int threads = 2, rounds = 5, steps = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") {
      model_name = value;
    } else if (flag == "--threads") {
      threads = std::atoi(value.c_str());
    } else if (flag == "--rounds") {
      rounds = std::atoi(value.c_str());
    } else if (flag == "--steps") {
      steps = std::atoi(value.c_str());
    } else {
      std::fprintf(stderr, "optimizer_bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (threads < 1 || rounds < 1 || steps < 1) {
    std::fprintf(stderr, "optimizer_bench: --threads, --rounds and --steps must be positive\n");
    return 2;
  }
  auto config = clipscale::LoadModelConfig(model_name);
  if (!config.ok()) {
    std::fprintf(stderr, "optimizer_bench: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  at::set_num_threads(threads);
  clipscale::ClipModel model(*config);
  const clipscale::ParameterGroups groups = clipscale::SplitForWeightDecay(*model);
  const Params torch_params = CopyWithGrads(groups), fused_params = CopyWithGrads(groups);
  int64_t numel = 0;
  for (const auto& p : groups.decay) numel += p.numel();
  for (const auto& p : groups.no_decay) numel += p.numel();

  auto baseline = Make<torch::optim::AdamW>(torch_params);
  auto fused = Make<clipscale::FusedAdamW>(fused_params);
  MillisecondsPerStep(*baseline, 3);  // warm-up: state allocation, first-touch pages
  MillisecondsPerStep(*fused, 3);
  double baseline_ms = 1e30, fused_ms = 1e30;
  for (int round = 0; round < rounds; ++round) {  // interleaved; best round of each
    baseline_ms = std::min(baseline_ms, MillisecondsPerStep(*baseline, steps));
    fused_ms = std::min(fused_ms, MillisecondsPerStep(*fused, steps));
  }
  std::printf(
      "AdamW step, model %s (%lld fp32 parameters), %d threads, best of %d rounds of %d steps:\n"
      "  torch::optim::AdamW %.3f ms, clipscale FusedAdamW %.3f ms: %.2fx faster\n",
      model_name.c_str(), static_cast<long long>(numel), at::get_num_threads(), rounds, steps,
      baseline_ms, fused_ms, baseline_ms / fused_ms);
  return 0;
}
