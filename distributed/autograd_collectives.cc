#include "distributed/autograd_collectives.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/status.h"

namespace clipscale {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

int64_t PackComm(Communicator* comm) { return reinterpret_cast<intptr_t>(comm); }

class AllGatherFunction : public torch::autograd::Function<AllGatherFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& local, Communicator* comm) {
    ctx->saved_data["comm"] = PackComm(comm);
    return comm->AllGather(local.contiguous());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto* comm =
        reinterpret_cast<Communicator*>(static_cast<intptr_t>(ctx->saved_data["comm"].toInt()));
    return {comm->ReduceScatter(grad_out[0].contiguous()), at::Tensor()};
  }
};

}  // namespace

torch::Tensor AllGatherWithGrad(const torch::Tensor& local, Communicator* comm) {
  CS_CHECK(comm != nullptr);
  if (comm->size() == 1) return local;
  return AllGatherFunction::apply(local, comm);
}

}  // namespace clipscale
