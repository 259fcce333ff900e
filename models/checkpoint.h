// Activation (gradient) checkpointing: run a block without keeping its
// activations, and run it again during backward to get its gradients, as
// torch.utils.checkpoint's reentrant variant does. Memory for a tower drops to
// its block inputs at the cost of one more forward per block.
#pragma once

#include <functional>

#include <torch/types.h>

namespace clipscale {

// y = fn(x), with fn's graph rebuilt during backward. Gradients reach fn's
// parameters and x. fn must be deterministic (CLIP blocks have no dropout).
// Without grad mode it is a plain call.
torch::Tensor Checkpoint(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x);

}  // namespace clipscale
