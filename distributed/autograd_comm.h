// How the custom autograd functions of distributed/ (the tiled losses,
// AllGatherWithGrad) carry their Communicator from forward to backward:
// saved_data holds IValues, which have no raw-pointer type, so the pointer
// rides as an integer. The caller keeps the communicator alive across backward.
#pragma once

#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>

#include "distributed/communicator.h"

namespace clipscale {

inline void SaveComm(torch::autograd::AutogradContext* ctx, Communicator* comm) {
  ctx->saved_data["comm"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(comm));
}

inline Communicator* SavedComm(torch::autograd::AutogradContext* ctx) {
  return reinterpret_cast<Communicator*>(static_cast<intptr_t>(ctx->saved_data["comm"].toInt()));
}

}  // namespace clipscale
