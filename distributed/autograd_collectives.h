// Collectives that autograd can differentiate through, for losses written
// outside the tiled ones (OpenCLIP's gather_with_grad).
#pragma once

#include <torch/types.h>

#include "distributed/communicator.h"

namespace clipscale {

// Concatenates every rank's `local` [n, ...] along dim 0 in rank order. In the
// backward pass the gradient of the gathered tensor is SUMMED over ranks and
// each rank keeps its own rows (a reduce-scatter): that is the exact gradient
// of Σ_ranks L_r when rank r computes L_r from the gathered tensor. Every rank
// must call both passes. With one rank: the identity.
torch::Tensor AllGatherWithGrad(const torch::Tensor& local, Communicator* comm);

}  // namespace clipscale
