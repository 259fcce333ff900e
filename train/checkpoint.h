// What a training checkpoint holds and how it is captured and restored. The
// folder protocol (tmp folder, fsync, rename, `latest`, manifest with CRC32C)
// is core/checkpoint_dir.h; here are its files:
//   model.safetensors      every parameter and buffer, OpenCLIP key names (open_clip
//                          loads it with strict=True)
//   optimizer.safetensors  AdamW state by parameter name: "<name>.exp_avg",
//                          "<name>.exp_avg_sq" and the step count "<name>.step"
//                          (not with distributed.zero: 1, whose ranks each write
//                          optimizer_shard_<r>.safetensors instead; train/zero.h)
//   state.pb               proto::CheckpointState (train/checkpoint_state.proto):
//                          step, loader cursor, schedule, shape of the job,
//                          config and index hashes, version
//   rank_<r>.pb            proto::RankPart: rank r's generators, written by rank r
// Rank 0 writes the first three on its writer thread; every rank writes its
// part; the commit lists them all (see CheckpointWriter).
// Nothing in them executes code when loaded.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include "absl/status/statusor.h"
#include "core/checkpoint_dir.h"
#include "distributed/communicator.h"
#include "train/checkpoint_state.pb.h"

namespace clipscale {

inline constexpr char kModelFile[] = "model.safetensors";
inline constexpr char kOptimizerFile[] = "optimizer.safetensors";
inline constexpr char kStateFile[] = "state.pb";

// A copy of everything a checkpoint holds, taken at a step boundary, so that a
// background thread can write it while training goes on.
struct CheckpointSnapshot {
  std::map<std::string, torch::Tensor> model;      // host copies
  std::map<std::string, torch::Tensor> optimizer;  // host copies
  proto::CheckpointState state;
};

// Copies the model's state dict and the optimizer's moments and step counts
// into `snapshot`, reusing its tensors when the shapes match (pinned host
// memory when `pinned`). Copies from a CUDA device are asynchronous; the call
// returns after they are done. `optimizer` null: no optimizer state (ZeRO-1,
// whose shards the ranks write themselves).
void CaptureTensors(const torch::nn::Module& model, const torch::optim::AdamW* optimizer,
                    bool pinned, CheckpointSnapshot* snapshot);

// Writes the snapshot's files (model, optimizer unless state.zero_world() > 0,
// state) into `writer`'s temporary folder. `pause_ms` > 0 sleeps after each file (fault-injection
// tests only).
absl::Status WriteSnapshotFiles(const CheckpointSnapshot& snapshot, CheckpointDirWriter& writer,
                                int pause_ms = 0);

// "rank_<r>.pb"
std::string RankPartName(int rank);
// Writes this rank's part into the temporary folder of the checkpoint of
// `step` under `root` (which rank 0 created) and returns its manifest entry.
absl::StatusOr<ManifestEntry> WriteRankPart(const std::string& root, int64_t step,
                                            const proto::RankPart& part);
// Rank `rank`'s part of a committed checkpoint; nullopt for a checkpoint
// written before parts existed.
absl::StatusOr<std::optional<proto::RankPart>> ReadRankPart(const std::string& dir, int rank);

// The state record of a verified checkpoint folder.
absl::StatusOr<proto::CheckpointState> ReadCheckpointState(const std::string& dir);

// Loads model and optimizer state from a verified folder, strictly: every key
// present, every shape equal, else nothing a caller sees is half-loaded for the
// model (LoadWeights' guarantee) and the optimizer is left as it was.
absl::Status LoadModelAndOptimizer(const std::string& dir, torch::nn::Module& model,
                                   torch::optim::AdamW& optimizer);

// Loads the model's weights alone (model.safetensors), strictly.
absl::Status LoadModel(const std::string& dir, torch::nn::Module& model);

// A collective: every rank's optimizer state becomes root's (AdamW moments and
// step counts; none if root has none). `device`: the parameters' device.
void BroadcastOptimizerState(torch::optim::AdamW& optimizer, Communicator& comm, int root,
                             const torch::Device& device);

// This process's generator states (CPU; and CUDA when `device` is one).
proto::RankRng CaptureRng(int rank, const torch::Device& device);
absl::Status RestoreRng(const proto::RankRng& rng, const torch::Device& device);

// Which checkpoint to resume from. `resume` is "latest" (the newest under
// `root` that verifies, at or before the `latest` pointer; each one that does
// not is described in `skipped`) or a checkpoint folder (which must verify).
// nullopt: "latest" and no checkpoint under `root` at all (start fresh).
absl::StatusOr<std::optional<std::string>> ResolveResume(const std::string& resume,
                                                         const std::string& root,
                                                         std::vector<std::string>* skipped);

}  // namespace clipscale
