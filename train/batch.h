// Turning examples into model inputs: image batches (train or eval
// transform) and token batches.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "data/examples.h"
#include "data/tokenizer.h"

namespace clipscale {

struct Batch {
  torch::Tensor images;  // [n, 3, S, S] float32
  torch::Tensor tokens;  // [n, context] int64
  torch::Tensor labels;  // [n] int64 (-1 when unknown)
};

// `augment_seed` set: RandomResizedCrop with a per-sample seed mixed from it;
// unset: OpenCLIP's eval transform.
Batch MakeBatch(const std::vector<Example>& examples, const std::vector<int64_t>& indices,
                int image_size, const ClipTokenizer& tokenizer, int context_length,
                const uint64_t* augment_seed);

}  // namespace clipscale
