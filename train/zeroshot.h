// Zero-shot classification as OpenCLIP does it: a class vector is the mean of
// the normalised text embeddings of its prompts, renormalised.
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"
#include "models/clip_model.h"

namespace clipscale {

// Prompt template sets by name: "simple" (OpenCLIP's SIMPLE_IMAGENET_TEMPLATES,
// 7 prompts) and "photo" ("a photo of a {}."). "{}" is replaced by the class name.
absl::StatusOr<std::vector<std::string>> PromptTemplates(const std::string& name);

// Reads one template per line from a file; each must contain "{}".
absl::StatusOr<std::vector<std::string>> ReadPromptTemplates(const std::string& path);

// Returns [embed_dim, num_classes] class vectors (unit columns), computed in
// batches of `classes_per_batch` classes under NoGradGuard.
torch::Tensor BuildZeroShotClassifier(ClipModel& model, const ClipTokenizer& tokenizer,
                                      const std::vector<std::string>& classnames,
                                      const std::vector<std::string>& templates,
                                      int classes_per_batch = 10);

// Tokenizes texts into a [n, context_length] int64 tensor.
torch::Tensor TokenizeToTensor(const ClipTokenizer& tokenizer,
                               const std::vector<std::string>& texts, int context_length);

}  // namespace clipscale
