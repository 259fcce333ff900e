// Tiled CLIP and SigLIP losses; the math is in notes/contrastive-loss.md.
// Rank r owns rows R_r = [r·n, (r+1)·n) of the global logit matrix and visits
// them in tile×tile blocks against all N gathered text columns. Every block
// lands in one of two or three preallocated tile buffers (the GEMMs write
// into them; e^t multiplies each row block of x, the gradients' factor is
// applied once at the end), so neither pass allocates per tile or holds any
// n×d temporary besides the gradients it returns. Inputs keep their dtype (the
// texts are gathered in it) and are upcast block by block to the accumulation
// type. CLIP recomputes each block in its backward pass: the
// column LSE needs every row first, and recomputing is the price of
// O(n·d + N·d) memory instead of O(n·N). SigLIP needs no such statistics, so it
// forms its gradients in the forward pass (6·N·n·d FLOPs instead of 8) and
// the backward pass only scales them by the incoming gradient.
#include "distributed/contrastive_loss.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/status.h"
#include "distributed/autograd_comm.h"

namespace clipscale {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// fp64 stays fp64 (tests compare to 1e-10); everything else accumulates in
// fp32, like the fp32 logits OpenCLIP computes under AMP.
at::ScalarType AccType(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// One rank's view of a tile pass: its rows, the gathered columns, and reusable
// tile-sized scratch (a tile view of a flat buffer stays contiguous at the edges).
class Tiles {
 public:
  Tiles(int64_t rows, int64_t cols, int64_t tile, int buffers, const at::TensorOptions& options)
      : rows_(rows), cols_(cols), tile_(tile) {
    const int64_t numel = std::min(tile, rows) * std::min(tile, cols);
    for (int k = 0; k < buffers; ++k) flat_.push_back(at::empty({numel}, options));
  }
  // Calls f(i0, i1, j0, j1) for every tile, row-major, so a row block of X
  // stays in cache while the columns stream past it.
  template <class F>
  void ForEach(F&& f) const {
    for (int64_t i0 = 0; i0 < rows_; i0 += tile_) {
      for (int64_t j0 = 0; j0 < cols_; j0 += tile_) {
        f(i0, std::min(i0 + tile_, rows_), j0, std::min(j0 + tile_, cols_));
      }
    }
  }
  at::Tensor Buffer(int k, int64_t rows, int64_t cols) const {
    return flat_[k].narrow(0, 0, rows * cols).view({rows, cols});
  }

 private:
  int64_t rows_, cols_, tile_;
  std::vector<at::Tensor> flat_;
};

// Tile (i0, j0) of rank r meets the global diagonal at tile diagonal k; its
// first element there is on tile row max(0, −k).
int64_t DiagOffset(int64_t offset, int64_t i0, int64_t j0) { return offset + i0 - j0; }

void CheckInputs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& t, Communicator* comm,
                 int64_t tile) {
  CS_CHECK(comm != nullptr);
  CS_CHECK_MSG(tile > 0, "tile ", tile);
  CS_CHECK_MSG(x.dim() == 2 && x.sizes() == y.sizes(), "image ", c10::str(x.sizes()), " text ",
               c10::str(y.sizes()));
  CS_CHECK_MSG(x.size(0) > 0, "empty batch");
  CS_CHECK_MSG(t.numel() == 1, "logit_scale must hold one value, has ", t.numel());
}

// With one rank the collectives are identities; skipping them saves an N×d copy each.
at::Tensor GatherRows(const at::Tensor& local, Communicator* comm) {
  return comm->size() == 1 ? local : comm->AllGather(local);
}
at::Tensor ScatterRows(const at::Tensor& all, Communicator* comm) {
  return comm->size() == 1 ? all : comm->ReduceScatter(all);
}

// log Σ_ranks exp(part) per column, stable: max first, then the shifted sum.
at::Tensor CombineLse(const at::Tensor& part, Communicator* comm) {
  if (comm->size() == 1) return part;
  at::Tensor max = part.clone();
  comm->AllReduce(max, ReduceOp::kMax);
  at::Tensor sum = (part - max).exp_();
  comm->AllReduce(sum, ReduceOp::kSum);
  return max + sum.log_();
}

at::Tensor AllReduceSum(at::Tensor value, Communicator* comm) {
  if (comm->size() > 1) comm->AllReduce(value, ReduceOp::kSum);
  return value;
}

// Σ_i a_i·b_i over all entries, a few hundred KiB of rows at a time: no n×d
// temporary, and ATen's pairwise sum within each chunk.
at::Tensor RowDotSum(const at::Tensor& a, const at::Tensor& b) {
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, a.size(1)));
  at::Tensor total = at::zeros({}, b.options());
  at::Tensor scratch = at::empty({std::min(chunk, a.size(0)), a.size(1)}, b.options());
  for (int64_t i0 = 0; i0 < a.size(0); i0 += chunk) {
    const int64_t i1 = std::min(i0 + chunk, a.size(0));
    at::Tensor prod = scratch.narrow(0, 0, i1 - i0);
    at::mul_out(prod, a.slice(0, i0, i1), b.slice(0, i0, i1));
    total.add_(prod.sum());
  }
  return total;
}

// Row blocks [i0, i1) of `x` as the tiles' operands, in the accumulation type
// `acc` and, when `scale` (0-dim, on the device) is given, multiplied by it. A
// view of x where neither applies; otherwise computed on the device into one
// tile×d buffer, so a bf16/fp16 input is upcast block by block and never as a
// whole n×d or N×d copy (the upcast is exact, so a block equals the block of
// the fp32 input x.to(acc), and so does the loss). Tiles::ForEach visits a row
// block's tiles one after another: the rows operand is prepared once per row
// block, a columns operand once per tile (d/tile of the tile's GEMM).
class Blocks {
 public:
  Blocks(const at::Tensor& x, at::ScalarType acc, int64_t tile, at::Tensor scale = {})
      : x_(x), scale_(std::move(scale)) {
    if (x.scalar_type() != acc || scale_.defined()) {
      buffer_ = at::empty({std::min(tile, x.size(0)), x.size(1)}, x.options().dtype(acc));
    }
  }
  const at::Tensor& Get(int64_t i0, int64_t i1) {
    if (i0 == i0_ && i1 == i1_) return block_;
    const at::Tensor rows = x_.slice(0, i0, i1);
    if (!buffer_.defined()) {
      block_ = rows;
    } else {
      block_ = buffer_.narrow(0, 0, i1 - i0);
      if (rows.scalar_type() == buffer_.scalar_type()) {
        at::mul_out(block_, rows, scale_);  // scale_ is defined here
      } else {
        // Upcast first: a mixed-dtype mul_out would round s·x to x's dtype.
        block_.copy_(rows);
        if (scale_.defined()) block_.mul_(scale_);
      }
    }
    i0_ = i0;
    i1_ = i1;
    return block_;
  }

 private:
  at::Tensor x_, scale_, buffer_, block_;
  int64_t i0_ = -1, i1_ = -1;
};

// Folds one tile's log Σ exp along `dim` into running (max, sum) pairs:
// max' = max(max, tile max), sum' = sum·e^(max−max') + Σ e^(s−max').
void FoldLse(const at::Tensor& s, int64_t dim, at::Tensor max, at::Tensor sum, at::Tensor scratch,
             at::Tensor tile_max) {
  at::amax_out(tile_max, s, {dim});
  at::Tensor new_max = at::maximum(max, tile_max);
  sum.mul_((max - new_max).exp_());
  max.copy_(new_max);
  at::sub_out(scratch, s, dim == 1 ? max.unsqueeze(1) : max.unsqueeze(0)).exp_();
  sum.add_(scratch.sum({dim}));
}

class ClipLossFunction : public torch::autograd::Function<ClipLossFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& image, const at::Tensor& text,
                            const at::Tensor& log_scale, Communicator* comm, int64_t tile) {
    const at::ScalarType acc = AccType(image);
    // The texts are gathered in their own dtype (bf16: half the bytes of fp32)
    // and both sides are upcast per block (Blocks).
    const at::Tensor x = image.contiguous();
    const at::Tensor y_all = GatherRows(text.contiguous(), comm);
    // Each row block of x is multiplied by s (a device scalar) into a tile×d
    // buffer and each tile is then one GEMM: nothing in the loss reads a device
    // value back (no .item(), no sync), and no n×d copy is made.
    const at::TensorOptions options = x.options().dtype(acc);
    const at::Tensor scale_t = log_scale.to(acc).reshape({}).exp();
    const int64_t n = x.size(0), big_n = y_all.size(0), offset = comm->rank() * n;
    const double inf = std::numeric_limits<double>::infinity();
    at::Tensor row_max = at::full({n}, -inf, options), row_sum = at::zeros({n}, options);
    at::Tensor col_max = at::full({big_n}, -inf, options);
    at::Tensor col_sum = at::zeros({big_n}, options);
    at::Tensor pos = at::empty({n}, options);  // S_ii of this rank's rows
    at::Tensor tile_max = at::empty({std::min(tile, std::max(n, big_n))}, options);
    const Tiles tiles(n, big_n, tile, 2, options);
    Blocks xs(x, acc, tile, scale_t), ys(y_all, acc, tile);
    tiles.ForEach([&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
      at::Tensor s = tiles.Buffer(0, i1 - i0, j1 - j0), scratch = tiles.Buffer(1, i1 - i0, j1 - j0);
      at::mm_out(s, xs.Get(i0, i1), ys.Get(j0, j1).t());
      const int64_t k = DiagOffset(offset, i0, j0);
      const at::Tensor diag = s.diagonal(k);
      if (diag.numel() > 0) pos.narrow(0, i0 + std::max<int64_t>(0, -k), diag.numel()).copy_(diag);
      FoldLse(s, 1, row_max.slice(0, i0, i1), row_sum.slice(0, i0, i1), scratch,
              tile_max.narrow(0, 0, i1 - i0));
      FoldLse(s, 0, col_max.slice(0, j0, j1), col_sum.slice(0, j0, j1), scratch,
              tile_max.narrow(0, 0, j1 - j0));
    });
    const at::Tensor row_lse = row_max.add_(row_sum.log_());
    const at::Tensor col_lse = CombineLse(col_max.add_(col_sum.log_()), comm);
    const at::Tensor local =
        (row_lse - pos).sum() + (col_lse.slice(0, offset, offset + n) - pos).sum();
    ctx->save_for_backward({x, y_all, log_scale, row_lse, col_lse});
    SaveComm(ctx, comm);
    ctx->saved_data["tile"] = tile;
    ctx->saved_data["x_type"] = image.scalar_type();
    ctx->saved_data["y_type"] = text.scalar_type();
    return AllReduceSum(local, comm) / (2.0 * big_n);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y_all = saved[1], &log_scale = saved[2];
    const at::Tensor &row_lse = saved[3], &col_lse = saved[4];
    Communicator* comm = SavedComm(ctx);
    const int64_t tile = ctx->saved_data["tile"].toInt();
    const int64_t n = x.size(0), big_n = y_all.size(0), offset = comm->rank() * n;
    const at::ScalarType acc = row_lse.scalar_type();
    const at::TensorOptions options = row_lse.options();
    const at::Tensor scale_t = log_scale.to(acc).reshape({}).exp();
    // G = ∂L/∂S = (g/2N)·(P_row + P_col − 2I); the tiles sum (P_row + P_col − 2I)·y
    // and the factor g·s/2N is applied once at the end, as a device scalar.
    const at::Tensor coef = grad_out[0].to(acc).reshape({}) * scale_t / (2.0 * big_n);
    at::Tensor grad_x = at::zeros(x.sizes(), options);
    at::Tensor grad_y_all = at::zeros(y_all.sizes(), options);
    const Tiles tiles(n, big_n, tile, 2, options);
    Blocks xs(x, acc, tile, scale_t), xr(x, acc, tile), ys(y_all, acc, tile);
    tiles.ForEach([&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
      const at::Tensor &xi = xr.Get(i0, i1), &yj = ys.Get(j0, j1);
      at::Tensor s = tiles.Buffer(0, i1 - i0, j1 - j0), p = tiles.Buffer(1, i1 - i0, j1 - j0);
      at::mm_out(s, xs.Get(i0, i1), yj.t());  // S as in forward
      at::sub_out(p, s, row_lse.slice(0, i0, i1).unsqueeze(1)).exp_();
      s.sub_(col_lse.slice(0, j0, j1).unsqueeze(0)).exp_().add_(p);
      s.diagonal(DiagOffset(offset, i0, j0)).sub_(2.0);
      grad_x.slice(0, i0, i1).addmm_(s, yj);
      grad_y_all.slice(0, j0, j1).addmm_(s.t(), xi);
    });
    grad_x.mul_(coef);
    grad_y_all.mul_(coef);
    const at::Tensor grad_y = ScatterRows(grad_y_all, comm);
    // ∂L/∂t = Σ_ij G_ij S_ij = Σ_i x_i·∂L/∂x_i over this rank's rows: its share.
    const at::Tensor grad_t = RowDotSum(x, grad_x);
    return {grad_x.to(ctx->saved_data["x_type"].toScalarType()),
            grad_y.to(ctx->saved_data["y_type"].toScalarType()),
            grad_t.to(log_scale.scalar_type()).reshape(log_scale.sizes()), at::Tensor(),
            at::Tensor()};
  }
};

// SigLIP's loss and/or its gradients for one rank, gradients for an incoming
// gradient of 1. ∂(−log σ(zℓ))/∂ℓ = σ(ℓ) − δ; on the diagonal as −σ(−ℓ),
// without cancellation.
struct SigLipParts {
  at::Tensor loss;            // Σ −log σ(zℓ) over this rank's rows, not yet over ranks or /N
  at::Tensor gx, gy, gt, gb;  // gy already reduce-scattered to this rank's rows
};

SigLipParts SigLipPass(const at::Tensor& x, const at::Tensor& y_all, const at::Tensor& log_scale,
                       const at::Tensor& bias, Communicator* comm, int64_t tile, bool want_loss,
                       bool want_grads) {
  // s·x per tile and the gradients' factor s/N at the end, as device scalars:
  // no value of the device is read back inside the loss.
  const at::ScalarType acc = AccType(x);
  const at::TensorOptions options = x.options().dtype(acc);
  const at::Tensor scale_t = log_scale.to(acc).reshape({}).exp();
  const at::Tensor b = bias.to(acc).reshape({}).to(x.device());
  const int64_t n = x.size(0), big_n = y_all.size(0), offset = comm->rank() * n;
  Blocks xs(x, acc, tile, scale_t), xr(x, acc, tile), ys(y_all, acc, tile);
  SigLipParts out;
  out.loss = at::zeros({}, options);
  at::Tensor grad_y_all, grad_b = at::zeros({}, options);
  if (want_grads) {
    out.gx = at::zeros(x.sizes(), options);
    grad_y_all = at::zeros(y_all.sizes(), options);
  }
  const Tiles tiles(n, big_n, tile, 3, options);
  tiles.ForEach([&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const at::Tensor& yj = ys.Get(j0, j1);
    at::Tensor zl = tiles.Buffer(0, i1 - i0, j1 - j0), gs = tiles.Buffer(1, i1 - i0, j1 - j0);
    at::addmm_out(zl, b, xs.Get(i0, i1), yj.t());  // ℓ
    const int64_t k = DiagOffset(offset, i0, j0);
    if (want_loss) {
      // z·ℓ: −ℓ off the diagonal, +ℓ on it; log_sigmoid has no softplus cutoff.
      zl.neg_().diagonal(k).neg_();
      at::Tensor buffer = tiles.Buffer(2, i1 - i0, j1 - j0);
      at::log_sigmoid_forward_out(gs, buffer, zl);
      out.loss.sub_(gs.sum());
      zl.neg_();  // ℓ off the diagonal, −ℓ on it
    } else {
      zl.diagonal(k).neg_();
    }
    if (!want_grads) return;
    at::sigmoid_out(gs, zl).diagonal(k).neg_();
    grad_b.add_(gs.sum());
    out.gx.slice(0, i0, i1).addmm_(gs, yj);
    grad_y_all.slice(0, j0, j1).addmm_(gs.t(), xr.Get(i0, i1));
  });
  if (!want_grads) return out;
  const at::Tensor coef = scale_t / static_cast<double>(big_n);
  out.gx.mul_(coef);
  grad_y_all.mul_(coef);
  out.gy = ScatterRows(grad_y_all, comm);
  // ∂L/∂t = Σ_ij G_ij (ℓ_ij − b) = Σ_i x_i·∂L/∂x_i; both scalars are this rank's share.
  out.gt = RowDotSum(x, out.gx);
  out.gb = grad_b.div_(static_cast<double>(big_n));
  return out;
}

class SigLipLossFunction : public torch::autograd::Function<SigLipLossFunction> {
 public:
  // `want_grads`: a backward pass can follow. Each tile's gradient depends on
  // that tile alone, so the gradients then come out of the loss's own GEMMs.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& image, const at::Tensor& text,
                            const at::Tensor& log_scale, const at::Tensor& bias, Communicator* comm,
                            int64_t tile, bool want_grads) {
    // Gathered in the texts' own dtype, upcast per block (Blocks).
    const at::Tensor x = image.contiguous();
    const at::Tensor y_all = GatherRows(text.contiguous(), comm);
    SigLipParts parts = SigLipPass(x, y_all, log_scale, bias, comm, tile, true, want_grads);
    if (want_grads) {
      ctx->saved_data["gx"] = parts.gx;
      ctx->saved_data["gy"] = parts.gy;
      ctx->saved_data["gt"] = parts.gt;
      ctx->saved_data["gb"] = parts.gb;
    }
    // The inputs themselves (no copies), for a second backward pass
    // (retain_graph), which recomputes.
    ctx->save_for_backward({image, text, log_scale, bias});
    SaveComm(ctx, comm);
    ctx->saved_data["tile"] = tile;
    return AllReduceSum(parts.loss, comm) / static_cast<double>(y_all.size(0));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &image = saved[0], &text = saved[1], &log_scale = saved[2], &bias = saved[3];
    const at::ScalarType acc = AccType(image);
    SigLipParts parts;
    if (ctx->saved_data.count("gx") > 0) {
      // Handed over, not copied, so that autograd can adopt them as .grad.
      parts.gx = ctx->saved_data["gx"].toTensor();
      parts.gy = ctx->saved_data["gy"].toTensor();
      parts.gt = ctx->saved_data["gt"].toTensor();
      parts.gb = ctx->saved_data["gb"].toTensor();
      for (const char* key : {"gx", "gy", "gt", "gb"}) ctx->saved_data.erase(key);
    } else {
      Communicator* comm = SavedComm(ctx);
      parts = SigLipPass(image.contiguous(), GatherRows(text.contiguous(), comm),
                         log_scale, bias, comm, ctx->saved_data["tile"].toInt(), false, true);
    }
    // Always multiplied (exact for the usual g = 1): testing g on the host would sync.
    const at::Tensor g = grad_out[0].to(acc).reshape({});
    for (at::Tensor* t : {&parts.gx, &parts.gy, &parts.gt, &parts.gb}) t->mul_(g);
    return {parts.gx.to(image.scalar_type()),
            parts.gy.to(text.scalar_type()),
            parts.gt.to(log_scale.scalar_type()).reshape(log_scale.sizes()),
            parts.gb.to(bias.scalar_type()).reshape(bias.sizes()),
            at::Tensor(),
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
  const bool want_grads =
      c10::GradMode::is_enabled() && (image_local.requires_grad() || text_local.requires_grad() ||
                                     logit_scale.requires_grad() || logit_bias.requires_grad());
  return SigLipLossFunction::apply(image_local, text_local, logit_scale, logit_bias, comm, tile,
                                   want_grads);
}

}  // namespace clipscale
