// Whether a checkpoint can continue under the current recipe: keys that change
// the continuation (model shape, data, global batch, seed, optimizer, schedule,
// epochs, ...) must be equal; keys that only change reporting or speed (logging,
// evaluation, output, checkpoint cadence, decode threads, caches, micro-batch,
// loss tiling, threads) may differ.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "train/checkpoint_state.pb.h"
#include "train/train_config.h"

namespace clipscale {

// True for a flattened key ("eval.every_steps") that may change across a resume.
bool SafeToChangeOnResume(const std::string& key);

// The differences between the checkpoint's recipe and `config` that break the
// continuation, one line each ("data.batch_size: 64 in the checkpoint, 128
// now"), including the resolved model config ("model_config.vision.width") and
// the training data (`index_hash`, the hash of the split now). Empty: compatible.
std::vector<std::string> ResumeConflicts(const proto::CheckpointState& state,
                                         const TrainConfig& config, uint64_t index_hash);

}  // namespace clipscale
