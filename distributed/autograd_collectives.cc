#include "distributed/autograd_collectives.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/status.h"
#include "distributed/autograd_comm.h"

namespace clipscale {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class AllGatherFunction : public torch::autograd::Function<AllGatherFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& local, Communicator* comm) {
    SaveComm(ctx, comm);
    return comm->AllGather(local.contiguous());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    return {SavedComm(ctx)->ReduceScatter(grad_out[0].contiguous()), at::Tensor()};
  }
};

}  // namespace

torch::Tensor AllGatherWithGrad(const torch::Tensor& local, Communicator* comm) {
  CS_CHECK(comm != nullptr);
  if (comm->size() == 1) return local;
  return AllGatherFunction::apply(local, comm);
}

}  // namespace clipscale
