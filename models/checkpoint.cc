#include "models/checkpoint.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/torch.h>

namespace clipscale {
namespace {

class CheckpointBackward : public torch::autograd::Node {
 public:
  CheckpointBackward(std::function<torch::Tensor(const torch::Tensor&)> fn, torch::Tensor input)
      : fn_(std::move(fn)), input_(std::move(input)) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    torch::AutoGradMode enable(true);
    torch::Tensor x = input_.detach().requires_grad_(input_.requires_grad());
    torch::Tensor y = fn_(x);
    // Reentrant backward: accumulates into fn's parameters and into x.grad.
    torch::autograd::backward({y}, {grads[0]});
    return {x.requires_grad() ? x.grad() : torch::Tensor()};
  }

  void release_variables() override { input_.reset(); }

 private:
  std::function<torch::Tensor(const torch::Tensor&)> fn_;
  torch::Tensor input_;
};

}  // namespace

torch::Tensor Checkpoint(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = fn(x);
  }
  auto node = c10::make_intrusive<CheckpointBackward>(fn, x);
  node->set_next_edges(torch::autograd::collect_next_edges(x));
  torch::autograd::set_history(y, node);
  return y;
}

}  // namespace clipscale
