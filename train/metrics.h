// Evaluation metrics on embeddings, as OpenCLIP computes them.
#pragma once

#include <map>
#include <string>

#include <torch/types.h>

namespace clipscale {

// [n, 2] float64: whether each row's label is the top-1 / among the top-5 of
// `logits` [n, classes].
torch::Tensor TopKHits(const torch::Tensor& logits, const torch::Tensor& labels);

// Top-1 and top-5 accuracy (fractions) of `logits` [n, classes] against `labels` [n].
std::map<std::string, double> ClassificationAccuracy(const torch::Tensor& logits,
                                                      const torch::Tensor& labels);

// For query rows q_i whose partner is candidate row offset+i: the 0-based rank
// of the partner: how many candidates score higher (q·c), or equal with a
// smaller index — a stable descending sort's order, which OpenCLIP's argsort
// gives on CPU. Identical captions thus do not all count as hits. Runs in row
// chunks, so memory is chunk×candidates. [m] float64.
torch::Tensor PartnerRanks(const torch::Tensor& queries, const torch::Tensor& candidates,
                           int64_t offset, int64_t chunk = 1024);

// PartnerRanks with the partner of query q at candidate column partners[q].
torch::Tensor PartnerRanksAt(const torch::Tensor& queries, const torch::Tensor& candidates,
                             const torch::Tensor& partners, int64_t chunk = 1024);

// Several captions per image (Flickr30k, COCO): texts[j] belongs to image
// owners[j]. For each image (global index first_image + row) the candidates
// ahead of its best-scoring caption, so rank < k means "some caption of the
// image is in the top k", as CLIP_benchmark counts image->text recall.
torch::Tensor BestPositiveRanks(const torch::Tensor& images, const torch::Tensor& texts,
                                const torch::Tensor& owners, int64_t first_image,
                                int64_t chunk = 1024);

// open_clip_train's get_clip_metrics from the partner ranks of every pair:
// for image_to_text and text_to_image, mean_rank, median_rank (1-based) and
// R@1, R@5, R@10 (fractions).
std::map<std::string, double> RetrievalMetricsFromRanks(const torch::Tensor& image_to_text,
                                                        const torch::Tensor& text_to_image);

// The same for paired embeddings (row i of both belongs together).
std::map<std::string, double> RetrievalMetrics(const torch::Tensor& image_features,
                                               const torch::Tensor& text_features);

// Symmetric InfoNCE over a full [n, n] logit matrix: the mean of the image→text
// and text→image cross-entropies with matching pairs on the diagonal.
torch::Tensor ClipLoss(const torch::Tensor& image_features, const torch::Tensor& text_features,
                       const torch::Tensor& logit_scale_exp);

}  // namespace clipscale
