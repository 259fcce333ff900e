// AdamW as OpenCLIP configures it: betas (0.9, 0.98), eps 1e-6, weight decay
// only on matrices — not on gains, biases, logit_scale, positional or class
// embeddings. Frozen parameters (requires_grad false) are left out.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

namespace clipscale {

struct OptimizerConfig {
  double weight_decay = 0.2;
  double beta1 = 0.9;
  double beta2 = 0.98;
  double eps = 1e-6;
  double grad_clip_norm = 0.0;  // 0: no clipping

  template <class V>
  void Visit(V& v) {
    v("weight_decay", weight_decay);
    v("beta1", beta1);
    v("beta2", beta2);
    v("eps", eps);
    v("grad_clip_norm", grad_clip_norm);
  }
};

// True for parameters that must not be decayed (by name and rank).
bool ExcludedFromWeightDecay(const std::string& name, const torch::Tensor& parameter);

struct ParameterGroups {
  std::vector<std::string> decay_names, no_decay_names;
  std::vector<torch::Tensor> decay, no_decay;
};
ParameterGroups SplitForWeightDecay(const torch::nn::Module& model);

// AdamW param groups: `decay` with config.weight_decay, `no_decay` with none;
// betas and eps from `config`, the learning rate 0 until set per step.
std::vector<torch::optim::OptimizerParamGroup> AdamWParamGroups(
    const std::vector<torch::Tensor>& decay, const std::vector<torch::Tensor>& no_decay,
    const OptimizerConfig& config);

// torch::optim::AdamW whose step() updates each CPU fp32/fp64 parameter in one
// fused, multi-threaded pass (p, grad, exp_avg, exp_avg_sq read once; p,
// exp_avg, exp_avg_sq written once) instead of torch's ~10 tensor passes. Same
// options, param groups, state (AdamWParamState, so save/load work) and math, up
// to fp rounding. Parameters it cannot fuse (CUDA, half, non-contiguous,
// amsgrad) take torch's own per-tensor-op update.
class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

// One AdamW step of a span of elements: `p`, `grad`, `exp_avg`, `exp_avg_sq`
// are contiguous tensors of one shape (views into larger ones allowed), the
// moments updated in place, `step` the step count after this update (>= 1).
// CPU fp32/fp64 spans take the fused loop FusedAdamW runs per parameter (so an
// update split into spans is bitwise the update of the whole); others take
// torch's AdamW tensor ops. The sharded optimizer (train/zero.h) uses it.
struct AdamWHyper {
  double lr = 0, weight_decay = 0, beta1 = 0.9, beta2 = 0.98, eps = 1e-6;
};
void AdamWSpanUpdate(const torch::Tensor& p, const torch::Tensor& grad,
                     const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t step,
                     const AdamWHyper& hyper);

// Group 0 decays, group 1 does not; the learning rate is set per step. The
// optimizer is a FusedAdamW.
std::unique_ptr<torch::optim::AdamW> MakeAdamW(const torch::nn::Module& model,
                                               const OptimizerConfig& config);

// Sets every group's learning rate.
void SetLearningRate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace clipscale
