#include "train/optimizer.h"

#include <cmath>
#include <cstdint>
#include <tuple>

#include <ATen/Parallel.h>
#include <torch/utils.h>

#include "absl/strings/match.h"

namespace clipscale {
namespace {

// The per-step constants, cast to the parameter's type the way ATen casts the
// Scalars of torch's tensor ops, so both paths round the same inputs.
template <typename T>
struct AdamWScalars {
  T decay;  // 1 - lr * weight_decay
  T beta1, one_minus_beta1, beta2, one_minus_beta2;
  T sqrt_bias_correction2, eps, neg_step_size;
};

// One pass over a contiguous chunk. The operations and their order are those of
// torch's AdamW (mul_, mul_/add_, mul_/addcmul_, sqrt/div/add_, addcdiv_);
// optimizer.cc is built with -O3 -fno-math-errno so GCC vectorizes the loop
// (sqrt included). No -ffast-math: results stay IEEE.
template <typename T>
void FusedAdamWChunk(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v,
                     int64_t n, AdamWScalars<T> s) {
  for (int64_t i = 0; i < n; ++i) {
    const T grad = g[i];
    const T exp_avg = m[i] * s.beta1 + s.one_minus_beta1 * grad;
    const T exp_avg_sq = v[i] * s.beta2 + s.one_minus_beta2 * grad * grad;
    const T denom = std::sqrt(exp_avg_sq) / s.sqrt_bias_correction2 + s.eps;
    m[i] = exp_avg;
    v[i] = exp_avg_sq;
    p[i] = p[i] * s.decay + s.neg_step_size * exp_avg / denom;
  }
}

template <typename T>
AdamWScalars<T> MakeScalars(const AdamWHyper& h, int64_t step) {
  const double bias_correction1 = 1 - std::pow(h.beta1, step);
  const double bias_correction2 = 1 - std::pow(h.beta2, step);
  AdamWScalars<T> s;
  s.decay = static_cast<T>(1 - h.lr * h.weight_decay);
  s.beta1 = static_cast<T>(h.beta1);
  s.one_minus_beta1 = static_cast<T>(1 - h.beta1);
  s.beta2 = static_cast<T>(h.beta2);
  s.one_minus_beta2 = static_cast<T>(1 - h.beta2);
  s.sqrt_bias_correction2 = static_cast<T>(std::sqrt(bias_correction2));
  s.eps = static_cast<T>(h.eps);
  s.neg_step_size = static_cast<T>(-h.lr / bias_correction1);
  return s;
}

template <typename T>
void FusedSpan(const torch::Tensor& p, const torch::Tensor& grad, const torch::Tensor& exp_avg,
               const torch::Tensor& exp_avg_sq, int64_t step, const AdamWHyper& hyper) {
  const AdamWScalars<T> s = MakeScalars<T>(hyper, step);
  T* p_data = p.data_ptr<T>();
  const T* g_data = grad.data_ptr<T>();
  T* m_data = exp_avg.data_ptr<T>();
  T* v_data = exp_avg_sq.data_ptr<T>();
  at::parallel_for(0, p.numel(), at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
    FusedAdamWChunk(p_data + begin, g_data + begin, m_data + begin, v_data + begin, end - begin, s);
  });
  // Writing through raw pointers skips the in-place ops' version bumps; keep
  // autograd's stale-saved-tensor check working.
  for (const torch::Tensor& t : {p, exp_avg, exp_avg_sq}) t.unsafeGetTensorImpl()->bump_version();
}

AdamWHyper HyperOf(const torch::optim::AdamWOptions& options) {
  AdamWHyper h;
  h.lr = options.lr();
  h.weight_decay = options.weight_decay();
  h.beta1 = std::get<0>(options.betas());
  h.beta2 = std::get<1>(options.betas());
  h.eps = options.eps();
  return h;
}

// torch::optim::AdamW::step's update of one span, op for op, for what the
// fused loop does not handle; `max_exp_avg_sq` defined: amsgrad.
void TorchAdamWSpan(const torch::Tensor& p, const torch::Tensor& grad, const torch::Tensor& exp_avg,
                    const torch::Tensor& exp_avg_sq, const torch::Tensor& max_exp_avg_sq,
                    int64_t step, const AdamWHyper& hyper) {
  torch::NoGradGuard no_grad;
  torch::Tensor param = p, m = exp_avg, v = exp_avg_sq;  // handles: updated in place
  if (hyper.weight_decay != 0) param.mul_(1 - hyper.lr * hyper.weight_decay);
  const double bias_correction1 = 1 - std::pow(hyper.beta1, step);
  const double bias_correction2 = 1 - std::pow(hyper.beta2, step);
  m.mul_(hyper.beta1).add_(grad, 1 - hyper.beta1);
  v.mul_(hyper.beta2).addcmul_(grad, grad, 1 - hyper.beta2);
  torch::Tensor denom;
  if (max_exp_avg_sq.defined()) {
    torch::Tensor max_v = max_exp_avg_sq;
    torch::max_out(max_v, v, max_v);
    denom = (max_v.sqrt() / std::sqrt(bias_correction2)).add_(hyper.eps);
  } else {
    denom = (v.sqrt() / std::sqrt(bias_correction2)).add_(hyper.eps);
  }
  param.addcdiv_(m, denom, -hyper.lr / bias_correction1);
}

// The fused loop's domain: dense contiguous CPU fp32/fp64 spans of one dtype.
bool FusedLoopApplies(const torch::Tensor& p, const torch::Tensor& grad,
                      const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq) {
  const auto dtype = p.scalar_type();
  return p.device().is_cpu() && (dtype == torch::kFloat || dtype == torch::kDouble) &&
         grad.device().is_cpu() && !grad.is_sparse() && grad.scalar_type() == dtype &&
         exp_avg.scalar_type() == dtype && exp_avg_sq.scalar_type() == dtype && p.is_contiguous() &&
         grad.is_contiguous() && exp_avg.is_contiguous() && exp_avg_sq.is_contiguous();
}

}  // namespace

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    const AdamWHyper hyper = HyperOf(options);
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "AdamW does not support sparse gradients");
      auto& slot = state()[p.unsafeGetTensorImpl()];
      if (slot == nullptr) {  // the same lazy initialization as torch's AdamW
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (options.amsgrad()) {
          fresh->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        }
        slot = std::move(fresh);
      }
      auto& param_state = static_cast<torch::optim::AdamWParamState&>(*slot);
      param_state.step(param_state.step() + 1);
      if (options.amsgrad()) {
        TorchAdamWSpan(p, grad, param_state.exp_avg(), param_state.exp_avg_sq(),
                       param_state.max_exp_avg_sq(), param_state.step(), hyper);
      } else {
        AdamWSpanUpdate(p, grad, param_state.exp_avg(), param_state.exp_avg_sq(),
                        param_state.step(), hyper);
      }
    }
  }
  return loss;
}

void AdamWSpanUpdate(const torch::Tensor& p, const torch::Tensor& grad,
                     const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t step,
                     const AdamWHyper& hyper) {
  if (!FusedLoopApplies(p, grad, exp_avg, exp_avg_sq)) {
    return TorchAdamWSpan(p, grad, exp_avg, exp_avg_sq, torch::Tensor(), step, hyper);
  }
  if (p.scalar_type() == torch::kFloat) {
    return FusedSpan<float>(p, grad, exp_avg, exp_avg_sq, step, hyper);
  }
  FusedSpan<double>(p, grad, exp_avg, exp_avg_sq, step, hyper);
}

bool ExcludedFromWeightDecay(const std::string& name, const torch::Tensor& parameter) {
  // OpenCLIP v3's rule (ndim < 2, "bn", "ln", "bias", "logit_scale") plus
  // main's no_weight_decay() set, which adds the 2-D positional embeddings.
  return parameter.dim() < 2 || absl::StrContains(name, "bn") || absl::StrContains(name, "ln") ||
         absl::StrContains(name, "bias") || absl::StrContains(name, "logit_scale") ||
         absl::EndsWith(name, "positional_embedding") || absl::EndsWith(name, "class_embedding");
}

ParameterGroups SplitForWeightDecay(const torch::nn::Module& model) {
  ParameterGroups groups;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    if (ExcludedFromWeightDecay(item.key(), item.value())) {
      groups.no_decay_names.push_back(item.key());
      groups.no_decay.push_back(item.value());
    } else {
      groups.decay_names.push_back(item.key());
      groups.decay.push_back(item.value());
    }
  }
  return groups;
}

std::vector<torch::optim::OptimizerParamGroup> AdamWParamGroups(
    const std::vector<torch::Tensor>& decay, const std::vector<torch::Tensor>& no_decay,
    const OptimizerConfig& config) {
  auto options = [&](double weight_decay) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(0.0);
    o->betas({config.beta1, config.beta2}).eps(config.eps).weight_decay(weight_decay);
    return o;
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(config.weight_decay));
  groups.emplace_back(no_decay, options(0.0));
  return groups;
}

std::unique_ptr<torch::optim::AdamW> MakeAdamW(const torch::nn::Module& model,
                                               const OptimizerConfig& config) {
  ParameterGroups groups = SplitForWeightDecay(model);
  return std::make_unique<FusedAdamW>(
      AdamWParamGroups(groups.decay, groups.no_decay, config),
      torch::optim::AdamWOptions(0.0).betas({config.beta1, config.beta2}).eps(config.eps));
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    group.options().set_lr(lr);
  }
}

}  // namespace clipscale
