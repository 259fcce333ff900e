// Data-parallel training step: every rank encodes its n = N/W samples, the
// exact contrastive loss is taken over the global batch of N (tiled, see
// distributed/contrastive_loss.h), and parameter gradients are all-reduced in
// buckets while the backward pass still runs.
//
// Reduction convention: gradients are SUMMED over ranks, never averaged. The
// tiled loss returns the one global loss on every rank and hands each rank the
// gradient of that loss w.r.t. its own rows (and its share of ∂/∂logit_scale
// and ∂/∂logit_bias), so the sum over ranks is exactly the gradient one
// process would get from the full-matrix loss over the whole global batch —
// for any W and any micro-batch size.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "distributed/communicator.h"
#include "distributed/contrastive_loss.h"
#include "models/clip_model.h"
#include "train/grad_scaler.h"
#include "train/job_control.h"
#include "train/precision.h"

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace clipscale {

enum class LossKind { kClip, kSigLip };

// "clip" (softmax InfoNCE, OpenCLIP's ClipLoss) or "siglip" (sigmoid loss with
// the model's learnable logit_bias).
absl::StatusOr<LossKind> ParseLossKind(const std::string& name);

// SUM all-reduce of the gradients of `params` in buckets of about
// `bucket_bytes`. Bucket k is launched (AllReduceAsync) as soon as all its
// gradients are final and buckets 0..k-1 are launched, so the collectives are
// issued in the same order on every rank whatever order the hooks fire in.
// The first prepared pass uses reverse registration order, a guess; it records
// the order in which the gradients actually became final, and Finish then
// rebuilds the buckets in rank 0's observed order (broadcast, so that every
// rank has the same buckets), as DDP does after its first iteration. From then
// on a bucket's gradients arrive together and every bucket but the last is on
// the wire before backward ends (with registration order, token_embedding —
// registered early, final only at the very end of the text backward — held
// back every bucket after its own). Each hook also polls the buckets in
// flight (CommWork::Progress): Open MPI advances a nonblocking all-reduce
// only inside MPI calls, so without the polls it would move its data in
// Finish's waits, after backward. With one rank it does nothing.
//
//   reducer.Prepare();      // the next backward pass produces the final grads
//   loss.backward();        // hooks copy ready grads into buckets and launch them
//   reducer.Finish();       // launches the rest, waits, writes the sums to .grad
//
// Gradients accumulated by earlier backward passes (grad cache micro-batches)
// are included: a hook fires after accumulation. A parameter that the prepared
// pass does not reach (e.g. logit_scale, whose gradient came from the loss
// pass) is reduced in Finish. Hooks run on the autograd thread that
// accumulates the gradient (the caller's thread on CPU).
class GradientReducer {
 public:
  // `overlap` false: nothing is launched from the hooks; Finish launches every
  // bucket after backward (distributed.overlap: false, the benchmark's baseline).
  GradientReducer(std::vector<torch::Tensor> params, Communicator* comm,
                  int64_t bucket_bytes = 25LL << 20, bool overlap = true);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  void Prepare();
  void Finish();

  const std::vector<torch::Tensor>& params() const { return params_; }
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Buckets launched from hooks during the last prepared backward pass (the
  // rest were launched by Finish).
  int64_t launched_during_backward() const { return launched_in_backward_; }
  // Buckets of the last prepared pass that were complete (every gradient in)
  // but launched only at a later hook or in Finish, held back by an earlier
  // bucket still waiting for a gradient.
  int64_t held_back() const { return held_back_; }
  // Parameter indices in bucket order, and whether that is the observed order.
  const std::vector<int>& order() const { return order_; }
  bool rebuilt() const { return rebuilt_; }
  // Buckets in `order` (a permutation of the parameter indices, the same on
  // every rank), marked as observed: a checkpoint's order, so that a resumed
  // run reduces in the same buckets as the run it continues. False, and
  // nothing changes, for anything but a permutation.
  bool SetOrder(const std::vector<int>& order);

 private:
  struct Slot {
    int bucket;
    int64_t offset;  // in elements, within the bucket buffer
  };
  struct Bucket {
    std::vector<int> params;
    torch::Tensor buffer;
    int pending = 0;
    int64_t completed_at = -1;  // the hook count when its last gradient came in
    std::unique_ptr<CommWork> work;
  };
  void OnGradReady(int param);
  void CopyIn(int param);
  void LaunchReady();
  void Build(std::vector<int> order);  // buckets over the parameters in this order
  void RebuildFromObservedOrder();     // collective (a broadcast from rank 0)

  std::vector<torch::Tensor> params_;
  Communicator* comm_;
  int64_t bucket_bytes_;
  bool overlap_;
  int first_unfinished_ = 0;  // buckets before it are done on the wire
  std::vector<int> order_;
  std::vector<int> observed_;  // the prepared pass's hook order, until rebuilt
  bool rebuilt_ = false;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  std::vector<bool> ready_;
  int next_launch_ = 0;
  bool armed_ = false;
  int64_t launched_in_backward_ = 0;
  int64_t hooks_ = 0;  // hooks of the prepared pass so far
  int64_t held_back_ = 0;
};

struct StepOptions {
  LossKind loss = LossKind::kClip;
  // Samples per encoder pass on this rank; 0 or >= n: no gradient caching.
  int64_t micro_batch = 0;
  int64_t loss_tile = kDefaultLossTile;
  bool lock_image = false;  // LiT: image tower frozen and run without grad
  // amp_*: the towers' forward passes run under autocast; the embeddings enter
  // the loss in the mode's dtype (bf16/fp16 are gathered as such). pure_bf16:
  // images are cast to bf16 for the bf16 weights.
  Precision precision = Precision::kFp32;
  // amp_fp16: backpropagates scaler->Scale(loss), so the gradients come out
  // multiplied by the scale (the caller unscales them). May be null.
  const GradScaler* scaler = nullptr;
  // Called as the step enters forward, loss, backward and all-reduce (the
  // heartbeat's phase; fault injection). May be empty.
  std::function<void(Phase)> on_phase;
};

// One global batch up to (not including) the optimizer step: zeroes the
// gradients, encodes this rank's `images` [n,3,S,S] and `tokens` [n,L] (rank r
// holds global rows [r·n, (r+1)·n), n equal on all ranks), takes the tiled
// loss, backpropagates and all-reduces through `reducer`. Returns the global
// loss (the same value on every rank) as a 0-dim tensor on the device,
// unscaled: nothing in the step reads it back to the host.
//
// With 0 < micro_batch < n it caches gradients (GradCache): all micro-batches
// are encoded without a graph, the loss is taken once over the cached
// embeddings, then each micro-batch is re-encoded with the CPU (and, for CUDA
// inputs, CUDA) generator state it first saw — so patch dropout replays the
// same masks — and its cached embedding gradient is backpropagated. Memory for
// activations is then one micro-batch's; the result equals the uncached step.
// Afterwards the generators are where a single pass over the micro-batches
// would have left them.
torch::Tensor ComputeGradients(ClipModel& model, const torch::Tensor& images,
                               const torch::Tensor& tokens, Communicator& comm,
                               GradientReducer& reducer, const StepOptions& options);

// The model's parameters that require a gradient, in registration order.
std::vector<torch::Tensor> TrainableParameters(torch::nn::Module& model);

// Copies rank `root`'s parameters and buffers to every rank.
void BroadcastModule(torch::nn::Module& module, Communicator& comm, int root = 0);

// Copies rank `root`'s buffers (BatchNorm running statistics) to every rank,
// as DDP's broadcast_buffers does before each forward pass. Returns false, and
// communicates nothing, for a module without buffers (the ViT towers).
//
// BatchNorm normalises over each encoder pass: this rank's n samples, or one
// micro-batch under gradient caching — as DDP without SyncBatchNorm and
// OpenCLIP's --accum-freq do. For models with BatchNorm (ModifiedResNet)
// gradients therefore depend on W and on the micro-batch size; the contract
// "equal to one process over the global batch" is for models without it.
bool BroadcastBuffers(torch::nn::Module& module, Communicator& comm, int root = 0);

// CRC-32C of the exact bytes of every parameter and buffer, in order.
uint32_t ModuleDigest(torch::nn::Module& module);

// FailedPrecondition naming the ranks whose parameters and buffers are not
// bitwise identical to rank 0's (collective: every rank must call it).
absl::Status CheckReplicasIdentical(torch::nn::Module& module, Communicator& comm);

}  // namespace clipscale
