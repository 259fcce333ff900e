// ZeRO stage 1 (distributed.zero: 1): AdamW whose moments are sharded over
// the ranks, as llm.c's zero.cuh does it. The trainable parameters, in
// registration order, form one flat vector of P elements, padded to W·S with
// S = ceil(P / W); rank r owns elements [r·S, (r+1)·S). Per step:
//
//   ReduceGradients()  reduce-scatter of the local gradients: rank r holds
//                      the sum over ranks of its S elements (and nothing else)
//   GradNorm(), ...    the summed gradient's norm from the shards' (one
//                      all-reduce); clipping and loss unscaling act on the shard
//   Step(lr)           AdamW on the shard — the parameter segments in it, each
//                      with its own weight decay, in the fused loop FusedAdamW
//                      runs (AdamWSpanUpdate), so the result is bitwise the
//                      unsharded update of the same summed gradient — then an
//                      all-gather of the updated shards into every rank's
//                      parameters
//
// The moments (exp_avg, exp_avg_sq) take 2·S elements per rank instead of 2·P.
// Checkpoints hold each rank's shard (optimizer_shard_<r>.safetensors) and the
// flat layout; a run on another W reads the ranges it owns from the old shards
// (ReadOptimizerRange), a run without ZeRO the whole range.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/checkpoint_dir.h"
#include "distributed/communicator.h"
#include "train/optimizer.h"

namespace clipscale {

struct ZeroParam {
  std::string name;
  torch::Tensor tensor;  // requires grad; contiguous
  bool decay = true;     // weight decay applies
};

// The model's trainable parameters in registration order (TrainableParameters'
// order), with OpenCLIP's weight-decay rule.
std::vector<ZeroParam> ZeroParams(const torch::nn::Module& model);

// This rank's part of the optimizer state: moments of flat elements
// [begin, begin + numel) of the layout, and the step count.
struct OptimizerRange {
  int64_t begin = 0;
  torch::Tensor exp_avg, exp_avg_sq;  // [numel]
  int64_t step = 0;                   // 0: no state yet (before the first step)
};

class ShardedAdamW {
 public:
  // All parameters of one dtype and device. `comm` outlives the optimizer.
  ShardedAdamW(std::vector<ZeroParam> params, const OptimizerConfig& config, Communicator* comm);

  int64_t numel() const { return numel_; }       // P
  int64_t shard_size() const { return shard_; }  // S
  int64_t shard_begin() const { return rank_ * shard_; }
  int64_t step_count() const { return step_; }
  const std::vector<ZeroParam>& params() const { return params_; }
  // Bytes of this rank's moments (2·S elements): the state ZeRO shards.
  int64_t state_bytes() const;
  // What the same moments take unsharded (2·P elements).
  int64_t unsharded_state_bytes() const;

  // Collective: the sum over ranks of every parameter's .grad, this rank's S
  // elements of it. An undefined gradient counts as zero (torch's AdamW would
  // skip that parameter; in a CLIP step every trainable one has a gradient).
  void ReduceGradients();
  // This rank's shard of the summed gradient (after ReduceGradients), in place
  // for clipping and unscaling.
  torch::Tensor& grad_shard() { return grad_shard_; }
  // Collective: the L2 norm of the whole summed gradient, 0-dim fp64 on the
  // parameters' device (inf or NaN when an element is not finite).
  torch::Tensor GradNorm();
  // Collective: AdamW with learning rate `lr` on this rank's shard, then every
  // rank's parameters take the updated values of every shard.
  void Step(double lr);

  // The moments of this rank's shard, for a checkpoint (views; copy them).
  OptimizerRange Shard() const;
  // Sets this rank's shard. `range` must cover [shard_begin(), +S) ∩ [0, P).
  absl::Status Restore(const OptimizerRange& range);

 private:
  struct Segment {  // the part of one parameter inside this rank's shard
    int param;
    int64_t param_offset;  // first element within the parameter
    int64_t shard_offset;  // first element within the shard
    int64_t numel;
  };

  std::vector<ZeroParam> params_;
  std::vector<int64_t> offsets_;  // each parameter's first flat element
  OptimizerConfig config_;
  Communicator* comm_;
  int rank_ = 0, world_ = 1;
  int64_t numel_ = 0, shard_ = 0;
  std::vector<Segment> segments_;
  torch::Tensor exp_avg_, exp_avg_sq_, grad_shard_;  // [S]
  int64_t step_ = 0;
};

// The flat layout of `params` as a checkpoint records it: names and element
// counts in order.
std::vector<std::pair<std::string, int64_t>> ZeroLayout(const std::vector<ZeroParam>& params);

// A ZeRO-1 checkpoint resumed without ZeRO: `optimizer` (an AdamW over
// `params`) takes the whole flat range `all` ([0, P)); with all.step 0 (saved
// before the first step) it is left without state.
absl::Status SetOptimizerState(torch::optim::AdamW& optimizer, const std::vector<ZeroParam>& params,
                               const OptimizerRange& all);

inline constexpr char kOptimizerShardPrefix[] = "optimizer_shard_";
// "optimizer_shard_<r>.safetensors"
std::string OptimizerShardName(int rank);
// The tensors of a shard file: "exp_avg", "exp_avg_sq" ([S]), "step" and
// "begin" (int64 scalars).
std::map<std::string, torch::Tensor> OptimizerShardTensors(const OptimizerRange& shard);
// Writes rank `rank`'s shard file into the temporary folder of the checkpoint
// of `step` under `root` (which rank 0 created) and returns its manifest
// entry, as WriteRankPart does for the rank's part.
absl::StatusOr<ManifestEntry> WriteOptimizerShard(const std::string& root, int64_t step, int rank,
                                                  const OptimizerRange& shard);

// Flat elements [begin, end) of the optimizer state in checkpoint `dir`: from
// the shards a ZeRO run of `saved_world` ranks wrote there with shard size
// `saved_shard` (only the files that overlap the range are read), or — when
// `saved_world` is 0 — from the per-parameter optimizer.safetensors of a run
// without ZeRO. `layout` is this run's; the checkpoint's (`saved_layout`)
// must be the same, else an error naming the first difference. A range of an
// optimizer that never stepped comes back with step 0 and zero moments.
absl::StatusOr<OptimizerRange> ReadOptimizerRange(
    const std::string& dir, const std::vector<std::pair<std::string, int64_t>>& layout,
    const std::vector<std::pair<std::string, int64_t>>& saved_layout, int saved_world,
    int64_t saved_shard, int64_t begin, int64_t end, torch::ScalarType dtype);

}  // namespace clipscale
