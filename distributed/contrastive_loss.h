// Exact CLIP (softmax InfoNCE) and SigLIP (sigmoid) losses over the global
// batch of all ranks, computed in tiles so that neither the forward nor the
// backward pass ever holds the n×N logit matrix (n local rows, N = n·W).
//
// Each rank passes its own n L2-normalised image and text embeddings (the same
// n on every rank; rank r's rows are global rows [r·n, (r+1)·n)). Inside,
// only the texts are all-gathered: rank r evaluates the row block
// S[R_r, 0:N] = exp(t)·X_r·Yᵀ tile by tile; the column statistics of the CLIP
// loss are combined across ranks with AllReduce(max) then AllReduce(sum), and
// the text gradients of the gathered columns are reduce-scattered (sum) back to
// their owners. CLIP's autograd saves only X_r, the gathered Y and the LSE
// vectors, and recomputes each tile in its backward pass (8·n·N·d FLOPs in
// all). SigLIP, when grad mode is on and an input requires grad, forms its
// gradients (and reduce-scatters them) in the forward pass already, 6·n·N·d
// FLOPs in all; its backward pass then only scales them (a retain_graph
// second backward recomputes). Beyond the returned gradients, either loss holds
// two or three tile×tile buffers and O(N) vectors; with one rank nothing is
// gathered or copied. Every rank must call the forward and, if any rank does,
// the backward pass: either may contain collectives.
//
// Gradient convention: the returned loss is the same global scalar on every
// rank. The gradients w.r.t. `image_local` and `text_local` are the exact
// gradients of that global loss w.r.t. this rank's rows. The gradients w.r.t.
// the replicated scalars (logit_scale, logit_bias) are this rank's share (the
// terms of its row block), NOT all-reduced here. Hence a later SUM all-reduce
// of all parameter gradients — encoder weights and the scalars alike — yields
// exactly the gradient one process would get from the full-matrix loss over
// the global batch. (AVG all-reduce would give 1/W of it.) With one rank all
// gradients are exact as returned.
//
// Arithmetic is fp64 for fp64 inputs and fp32 otherwise. bf16/fp16 inputs are
// all-gathered in their own dtype (half the bytes of fp32) and upcast one
// tile×d block at a time, never as a whole n×d or N×d fp32 copy; since the
// upcast is exact, the loss of bf16 inputs equals the fp32 loss of the same
// values. The loss is returned in the accumulation type, the input gradients
// (accumulated in it) in the inputs' dtype.
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "distributed/communicator.h"

namespace clipscale {

// Rows and columns of one logit tile; memory is 2 (CLIP) or 3 (SigLIP) such
// tiles at a time, in the accumulation type.
inline constexpr int64_t kDefaultLossTile = 1024;

// OpenCLIP's ClipLoss over the global batch:
//   L = (1/2N) Σ_i [(LSE_j S_ij − S_ii) + (LSE_j S_ji − S_ii)],  S = e^t·X·Yᵀ
// which is (CE(S, arange) + CE(Sᵀ, arange))/2. `logit_scale` is the 0-dim log
// scale t (OpenCLIP's `logit_scale` parameter before .exp()). The running-max
// LSE keeps it finite at e^t = 100 and with duplicated rows.
torch::Tensor TiledClipLoss(const torch::Tensor& image_local, const torch::Tensor& text_local,
                            const torch::Tensor& logit_scale, Communicator* comm,
                            int64_t tile = kDefaultLossTile);

// SigLIP's sigmoid loss over the global batch:
//   L = −(1/N) Σ_ij log σ(z_ij·(e^t·x_i·y_j + b)),  z = 2δ − 1.
// Normalisation: 1/N with N the GLOBAL batch, i.e. what OpenCLIP's SigLipLoss
// returns in one process over the whole batch. OpenCLIP's multi-rank SigLipLoss
// divides each rank's row-block sum by the LOCAL n instead, so its per-rank
// losses are W times larger; DDP's AVG all-reduce then brings its gradients
// back to those of this L. We return the global L on every rank so that the
// logged value and the SUM all-reduced gradients both equal the one-process
// loss over the global batch, whatever the number of ranks.
torch::Tensor TiledSigLipLoss(const torch::Tensor& image_local, const torch::Tensor& text_local,
                              const torch::Tensor& logit_scale, const torch::Tensor& logit_bias,
                              Communicator* comm, int64_t tile = kDefaultLossTile);

}  // namespace clipscale
