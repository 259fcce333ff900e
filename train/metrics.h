// Evaluation metrics on embeddings, as OpenCLIP computes them.
#pragma once

#include <map>
#include <string>

#include <torch/types.h>

namespace clipscale {

// Top-1 and top-5 accuracy (fractions) of `logits` [n, classes] against `labels` [n].
std::map<std::string, double> ClassificationAccuracy(const torch::Tensor& logits,
                                                      const torch::Tensor& labels);

// Retrieval metrics for paired embeddings (row i of both belongs together), as
// open_clip_train's get_clip_metrics: for image_to_text and text_to_image,
// mean_rank, median_rank (1-based) and R@1, R@5, R@10 (fractions).
std::map<std::string, double> RetrievalMetrics(const torch::Tensor& image_features,
                                               const torch::Tensor& text_features);

// Symmetric InfoNCE over a full [n, n] logit matrix: the mean of the image→text
// and text→image cross-entropies with matching pairs on the diagonal.
torch::Tensor ClipLoss(const torch::Tensor& image_features, const torch::Tensor& text_features,
                       const torch::Tensor& logit_scale_exp);

}  // namespace clipscale
