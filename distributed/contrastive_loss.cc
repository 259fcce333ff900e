// Tiled CLIP and SigLIP losses; the math is in notes/contrastive-loss.md.
// Rank r owns rows R_r = [r·n, (r+1)·n) of the global logit matrix and visits
// them in tile×tile blocks against all N gathered text columns. A block is
// recomputed in the backward pass instead of being saved: that recomputation
// is the price of O(n·d + N·d) memory instead of O(n·N).
#include "distributed/contrastive_loss.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <limits>

#include "core/status.h"

namespace clipscale {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// fp64 stays fp64 (tests compare to 1e-10); everything else accumulates in
// fp32, like the fp32 logits OpenCLIP computes under AMP.
at::ScalarType AccType(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// Calls f(i0, i1, j0, j1) for every tile of a rows×cols matrix, row-major.
template <class F>
void ForEachTile(int64_t rows, int64_t cols, int64_t tile, F&& f) {
  for (int64_t i0 = 0; i0 < rows; i0 += tile) {
    for (int64_t j0 = 0; j0 < cols; j0 += tile) {
      f(i0, std::min(i0 + tile, rows), j0, std::min(j0 + tile, cols));
    }
  }
}

void CheckInputs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& t, Communicator* comm,
                 int64_t tile) {
  CS_CHECK(comm != nullptr);
  CS_CHECK_MSG(tile > 0, "tile ", tile);
  CS_CHECK_MSG(x.dim() == 2 && x.sizes() == y.sizes(), "image ", c10::str(x.sizes()), " text ",
               c10::str(y.sizes()));
  CS_CHECK_MSG(x.size(0) > 0, "empty batch");
  CS_CHECK_MSG(t.numel() == 1, "logit_scale must hold one value, has ", t.numel());
}

// The communicator pointer rides in saved_data as an integer: IValue has no raw
// pointer type, and the caller keeps the communicator alive across backward.
int64_t PackComm(Communicator* comm) { return reinterpret_cast<intptr_t>(comm); }
Communicator* UnpackComm(AutogradContext* ctx) {
  return reinterpret_cast<Communicator*>(static_cast<intptr_t>(ctx->saved_data["comm"].toInt()));
}

// log Σ_ranks exp(part) per column, stable: max first, then the shifted sum.
at::Tensor CombineLse(const at::Tensor& part, Communicator* comm) {
  at::Tensor max = part.clone();
  comm->AllReduce(max, ReduceOp::kMax);
  at::Tensor sum = (part - max).exp_();
  comm->AllReduce(sum, ReduceOp::kSum);
  return max + sum.log_();
}

at::Tensor AllReduceSum(at::Tensor value, Communicator* comm) {
  comm->AllReduce(value, ReduceOp::kSum);
  return value;
}

class ClipLossFunction : public torch::autograd::Function<ClipLossFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& image, const at::Tensor& text,
                            const at::Tensor& log_scale, Communicator* comm, int64_t tile) {
    const at::ScalarType acc = AccType(image);
    const at::Tensor x = image.to(acc).contiguous();
    const at::Tensor y_all = comm->AllGather(text.to(acc).contiguous());
    const at::Tensor scale = log_scale.to(acc).reshape({}).exp();
    const at::Tensor xs = x * scale;  // scaling the n rows, not every tile
    const int64_t n = x.size(0), big_n = y_all.size(0), offset = comm->rank() * n;
    const double inf = std::numeric_limits<double>::infinity();
    at::Tensor row_lse = at::full({n}, -inf, x.options());
    at::Tensor col_part = at::full({big_n}, -inf, x.options());
    ForEachTile(n, big_n, tile, [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
      const at::Tensor s = at::mm(xs.slice(0, i0, i1), y_all.slice(0, j0, j1).t());
      at::Tensor r = row_lse.slice(0, i0, i1), c = col_part.slice(0, j0, j1);
      r.copy_(at::logaddexp(r, at::logsumexp(s, {1})));
      c.copy_(at::logaddexp(c, at::logsumexp(s, {0})));
    });
    const at::Tensor col_lse = CombineLse(col_part, comm);
    const at::Tensor pos = (xs * y_all.slice(0, offset, offset + n)).sum(1);
    const at::Tensor local =
        (row_lse - pos).sum() + (col_lse.slice(0, offset, offset + n) - pos).sum();
    ctx->save_for_backward({x, y_all, log_scale, row_lse, col_lse});
    ctx->saved_data["comm"] = PackComm(comm);
    ctx->saved_data["tile"] = tile;
    ctx->saved_data["x_type"] = image.scalar_type();
    ctx->saved_data["y_type"] = text.scalar_type();
    return AllReduceSum(local, comm) / (2.0 * big_n);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y_all = saved[1], &log_scale = saved[2];
    const at::Tensor &row_lse = saved[3], &col_lse = saved[4];
    Communicator* comm = UnpackComm(ctx);
    const int64_t tile = ctx->saved_data["tile"].toInt();
    const int64_t n = x.size(0), big_n = y_all.size(0), offset = comm->rank() * n;
    const at::Tensor scale = log_scale.to(x.scalar_type()).reshape({}).exp();
    const at::Tensor g = grad_out[0].to(x.scalar_type()).reshape({});
    const at::Tensor xs = x * scale;
    const at::Tensor coef = g * scale / (2.0 * big_n);  // folds s into G = ∂L/∂S
    at::Tensor grad_x = at::zeros_like(x);
    at::Tensor grad_y_all = at::zeros_like(y_all);
    ForEachTile(n, big_n, tile, [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
      const at::Tensor yj = y_all.slice(0, j0, j1);
      const at::Tensor s = at::mm(xs.slice(0, i0, i1), yj.t());
      at::Tensor gs = (s - row_lse.slice(0, i0, i1).unsqueeze(1)).exp_();
      gs.add_((s - col_lse.slice(0, j0, j1).unsqueeze(0)).exp_()).mul_(coef);
      grad_x.slice(0, i0, i1).addmm_(gs, yj);
      grad_y_all.slice(0, j0, j1).addmm_(gs.t(), x.slice(0, i0, i1));
    });
    at::Tensor grad_y = comm->ReduceScatter(grad_y_all);
    const at::Tensor diag = 2.0 * coef;  // the −2δ_ij/(2N) term of G, times s
    grad_x.sub_(y_all.slice(0, offset, offset + n) * diag);
    grad_y.sub_(x * diag);
    // ∂L/∂t = Σ_ij G_ij S_ij = Σ_i x_i·∂L/∂x_i over this rank's rows: its share.
    const at::Tensor grad_t = (x * grad_x).sum();
    return {grad_x.to(ctx->saved_data["x_type"].toScalarType()),
            grad_y.to(ctx->saved_data["y_type"].toScalarType()),
            grad_t.to(log_scale.scalar_type()).reshape(log_scale.sizes()), at::Tensor(),
            at::Tensor()};
  }
};

class SigLipLossFunction : public torch::autograd::Function<SigLipLossFunction> {
 public:
  // Tile (i0, j0) of rank r meets the global diagonal at tile diagonal k.
  static int64_t DiagOffset(int64_t offset, int64_t i0, int64_t j0) { return offset + i0 - j0; }

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& image, const at::Tensor& text,
                            const at::Tensor& log_scale, const at::Tensor& bias, Communicator* comm,
                            int64_t tile) {
    const at::ScalarType acc = AccType(image);
    const at::Tensor x = image.to(acc).contiguous();
    const at::Tensor y_all = comm->AllGather(text.to(acc).contiguous());
    const at::Tensor xs = x * log_scale.to(acc).reshape({}).exp();
    const at::Tensor b = bias.to(acc).reshape({});
    const int64_t n = x.size(0), big_n = y_all.size(0), offset = comm->rank() * n;
    at::Tensor local = at::zeros({}, x.options());
    ForEachTile(n, big_n, tile, [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
      // z·ℓ: −ℓ off the diagonal, +ℓ on it; log_sigmoid has no softplus cutoff.
      at::Tensor zl = at::mm(xs.slice(0, i0, i1), y_all.slice(0, j0, j1).t()).add_(b).neg_();
      zl.diagonal(DiagOffset(offset, i0, j0)).neg_();
      local.sub_(at::log_sigmoid(zl).sum());
    });
    ctx->save_for_backward({x, y_all, log_scale, bias});
    ctx->saved_data["comm"] = PackComm(comm);
    ctx->saved_data["tile"] = tile;
    ctx->saved_data["x_type"] = image.scalar_type();
    ctx->saved_data["y_type"] = text.scalar_type();
    return AllReduceSum(local, comm) / static_cast<double>(big_n);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y_all = saved[1], &log_scale = saved[2], &bias = saved[3];
    Communicator* comm = UnpackComm(ctx);
    const int64_t tile = ctx->saved_data["tile"].toInt();
    const int64_t n = x.size(0), big_n = y_all.size(0), offset = comm->rank() * n;
    const at::Tensor scale = log_scale.to(x.scalar_type()).reshape({}).exp();
    const at::Tensor b = bias.to(x.scalar_type()).reshape({});
    const at::Tensor g_over_n = grad_out[0].to(x.scalar_type()).reshape({}) / double(big_n);
    const at::Tensor xs = x * scale;
    at::Tensor grad_x = at::zeros_like(x);
    at::Tensor grad_y_all = at::zeros_like(y_all);
    at::Tensor grad_b = at::zeros({}, x.options());
    ForEachTile(n, big_n, tile, [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
      const at::Tensor yj = y_all.slice(0, j0, j1);
      const at::Tensor l = at::mm(xs.slice(0, i0, i1), yj.t()).add_(b);
      // ∂(−log σ(zℓ))/∂ℓ = σ(ℓ) − δ; on the diagonal as −σ(−ℓ), without cancellation.
      at::Tensor gs = at::sigmoid(l);
      const int64_t k = DiagOffset(offset, i0, j0);
      gs.diagonal(k).copy_(at::sigmoid(l.diagonal(k).neg()).neg_());
      grad_b.add_(gs.sum());
      gs.mul_(g_over_n * scale);
      grad_x.slice(0, i0, i1).addmm_(gs, yj);
      grad_y_all.slice(0, j0, j1).addmm_(gs.t(), x.slice(0, i0, i1));
    });
    at::Tensor grad_y = comm->ReduceScatter(grad_y_all);
    // ∂L/∂t = Σ_ij G_ij (ℓ_ij − b) = Σ_i x_i·∂L/∂x_i; both scalars are this rank's share.
    const at::Tensor grad_t = (x * grad_x).sum();
    grad_b.mul_(g_over_n);
    return {grad_x.to(ctx->saved_data["x_type"].toScalarType()),
            grad_y.to(ctx->saved_data["y_type"].toScalarType()),
            grad_t.to(log_scale.scalar_type()).reshape(log_scale.sizes()),
            grad_b.to(bias.scalar_type()).reshape(bias.sizes()),
            at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

torch::Tensor TiledClipLoss(const torch::Tensor& image_local, const torch::Tensor& text_local,
                            const torch::Tensor& logit_scale, Communicator* comm, int64_t tile) {
  CheckInputs(image_local, text_local, logit_scale, comm, tile);
  return ClipLossFunction::apply(image_local, text_local, logit_scale, comm, tile);
}

torch::Tensor TiledSigLipLoss(const torch::Tensor& image_local, const torch::Tensor& text_local,
                              const torch::Tensor& logit_scale, const torch::Tensor& logit_bias,
                              Communicator* comm, int64_t tile) {
  CheckInputs(image_local, text_local, logit_scale, comm, tile);
  CS_CHECK_MSG(logit_bias.numel() == 1, "logit_bias must hold one value");
  return SigLipLossFunction::apply(image_local, text_local, logit_scale, logit_bias, comm, tile);
}

}  // namespace clipscale
