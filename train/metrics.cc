#include "train/metrics.h"

#include <algorithm>

#include <torch/torch.h>

namespace clipscale {

std::map<std::string, double> ClassificationAccuracy(const torch::Tensor& logits,
                                                      const torch::Tensor& labels) {
  const int64_t k = std::min<int64_t>(5, logits.size(1));
  torch::Tensor top = std::get<1>(logits.topk(k, 1));
  torch::Tensor hits = top.eq(labels.view({-1, 1}));
  return {{"top1", hits.select(1, 0).to(torch::kFloat64).mean().item<double>()},
          {"top5", hits.any(1).to(torch::kFloat64).mean().item<double>()}};
}

std::map<std::string, double> RetrievalMetrics(const torch::Tensor& image_features,
                                               const torch::Tensor& text_features) {
  torch::NoGradGuard no_grad;
  torch::Tensor logits_per_image = image_features.matmul(text_features.t());
  std::map<std::string, double> out;
  const torch::Tensor truth = torch::arange(logits_per_image.size(0)).view({-1, 1});
  for (const auto& [name, logits] : {std::pair{"image_to_text", logits_per_image},
                                     std::pair{"text_to_image", logits_per_image.t()}}) {
    // Position of the true partner in each row's descending order (0-based).
    torch::Tensor ranking = logits.argsort(1, /*descending=*/true);
    torch::Tensor preds = (ranking == truth).to(torch::kInt64).argmax(1).to(torch::kFloat64);
    const std::string prefix = name;
    out[prefix + "_mean_rank"] = preds.mean().item<double>() + 1;
    // numpy's median averages the two middle values; OpenCLIP floors it, then adds 1.
    torch::Tensor sorted = std::get<0>(preds.sort());
    const int64_t n = sorted.size(0);
    const double median = n % 2 ? sorted[n / 2].item<double>()
                                : 0.5 * (sorted[n / 2 - 1].item<double>() + sorted[n / 2].item<double>());
    out[prefix + "_median_rank"] = std::floor(median) + 1;
    for (int k : {1, 5, 10}) {
      out[prefix + "_R@" + std::to_string(k)] = (preds < k).to(torch::kFloat64).mean().item<double>();
    }
  }
  return out;
}

torch::Tensor ClipLoss(const torch::Tensor& image_features, const torch::Tensor& text_features,
                       const torch::Tensor& logit_scale_exp) {
  torch::Tensor logits = logit_scale_exp * image_features.matmul(text_features.t());
  torch::Tensor labels = torch::arange(logits.size(0), logits.options().dtype(torch::kLong));
  return 0.5 * (torch::nn::functional::cross_entropy(logits, labels) +
                torch::nn::functional::cross_entropy(logits.t(), labels));
}

}  // namespace clipscale
