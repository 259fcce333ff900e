#include "train/metrics.h"

#include <algorithm>

#include <torch/torch.h>

namespace clipscale {

torch::Tensor TopKHits(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t k = std::min<int64_t>(5, logits.size(1));
  torch::Tensor top = std::get<1>(logits.topk(k, 1));
  torch::Tensor hits = top.eq(labels.view({-1, 1}).to(top.device()));
  return torch::stack({hits.select(1, 0), hits.any(1)}, 1).to(torch::kFloat64);
}

std::map<std::string, double> ClassificationAccuracy(const torch::Tensor& logits,
                                                      const torch::Tensor& labels) {
  torch::Tensor mean = TopKHits(logits, labels).mean(0).to(torch::kCPU);
  return {{"top1", mean[0].item<double>()}, {"top5", mean[1].item<double>()}};
}

torch::Tensor PartnerRanks(const torch::Tensor& queries, const torch::Tensor& candidates,
                           int64_t offset, int64_t chunk) {
  torch::NoGradGuard no_grad;
  const int64_t m = queries.size(0);
  std::vector<torch::Tensor> ranks{torch::empty({0}, torch::kFloat64)};
  for (int64_t start = 0; start < m; start += chunk) {
    const int64_t len = std::min(chunk, m - start);
    torch::Tensor scores = queries.narrow(0, start, len).matmul(candidates.t());
    torch::Tensor rows = torch::arange(len, torch::TensorOptions().dtype(torch::kLong).device(scores.device()));
    torch::Tensor partner_column = rows + offset + start;
    torch::Tensor partner = scores.index({rows, partner_column}).view({-1, 1});
    // Ties go to the earlier candidate, as in a stable descending sort.
    torch::Tensor columns = torch::arange(candidates.size(0), partner_column.options()).view({1, -1});
    torch::Tensor ahead =
        scores.gt(partner).logical_or_(scores.eq(partner).logical_and_(columns < partner_column.view({-1, 1})));
    ranks.push_back(ahead.sum(1).to(torch::kFloat64).to(torch::kCPU));
  }
  return torch::cat(ranks);
}

torch::Tensor PartnerRanksAt(const torch::Tensor& queries, const torch::Tensor& candidates,
                             const torch::Tensor& partners, int64_t chunk) {
  torch::NoGradGuard no_grad;
  const int64_t m = queries.size(0);
  std::vector<torch::Tensor> ranks{torch::empty({0}, torch::kFloat64)};
  const torch::Tensor partner_columns = partners.to(queries.device(), torch::kLong);
  for (int64_t start = 0; start < m; start += chunk) {
    const int64_t len = std::min(chunk, m - start);
    torch::Tensor scores = queries.narrow(0, start, len).matmul(candidates.t());
    torch::Tensor rows = torch::arange(len, partner_columns.options());
    torch::Tensor partner_column = partner_columns.narrow(0, start, len);
    torch::Tensor partner = scores.index({rows, partner_column}).view({-1, 1});
    torch::Tensor columns = torch::arange(candidates.size(0), partner_column.options()).view({1, -1});
    torch::Tensor ahead = scores.gt(partner).logical_or_(
        scores.eq(partner).logical_and_(columns < partner_column.view({-1, 1})));
    ranks.push_back(ahead.sum(1).to(torch::kFloat64).to(torch::kCPU));
  }
  return torch::cat(ranks);
}

torch::Tensor BestPositiveRanks(const torch::Tensor& images, const torch::Tensor& texts,
                                const torch::Tensor& owners, int64_t first_image, int64_t chunk) {
  torch::NoGradGuard no_grad;
  const int64_t m = images.size(0);
  std::vector<torch::Tensor> ranks{torch::empty({0}, torch::kFloat64)};
  const torch::Tensor owner = owners.to(images.device(), torch::kLong).view({1, -1});
  const torch::Tensor columns = torch::arange(texts.size(0), owner.options()).view({1, -1});
  for (int64_t start = 0; start < m; start += chunk) {
    const int64_t len = std::min(chunk, m - start);
    torch::Tensor scores = images.narrow(0, start, len).matmul(texts.t());
    torch::Tensor me = torch::arange(len, owner.options()).view({-1, 1}) + (first_image + start);
    torch::Tensor positive = owner.eq(me);
    // The best of the image's captions (the first of equal ones), then the candidates ahead of it.
    torch::Tensor masked = scores.masked_fill(positive.logical_not(), -INFINITY);
    torch::Tensor best_column = masked.argmax(1, /*keepdim=*/true);
    torch::Tensor best = masked.gather(1, best_column);
    torch::Tensor ahead = scores.gt(best).logical_or_(scores.eq(best).logical_and_(columns < best_column));
    ranks.push_back(ahead.sum(1).to(torch::kFloat64).to(torch::kCPU));
  }
  return torch::cat(ranks);
}

std::map<std::string, double> RetrievalMetricsFromRanks(const torch::Tensor& image_to_text,
                                                        const torch::Tensor& text_to_image) {
  std::map<std::string, double> out;
  for (const auto& [name, ranks] : {std::pair{"image_to_text", image_to_text},
                                    std::pair{"text_to_image", text_to_image}}) {
    const torch::Tensor preds = ranks.to(torch::kCPU).to(torch::kFloat64);
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

std::map<std::string, double> RetrievalMetrics(const torch::Tensor& image_features,
                                               const torch::Tensor& text_features) {
  return RetrievalMetricsFromRanks(PartnerRanks(image_features, text_features, 0),
                                   PartnerRanks(text_features, image_features, 0));
}

torch::Tensor ClipLoss(const torch::Tensor& image_features, const torch::Tensor& text_features,
                       const torch::Tensor& logit_scale_exp) {
  torch::Tensor logits = logit_scale_exp * image_features.matmul(text_features.t());
  torch::Tensor labels = torch::arange(logits.size(0), logits.options().dtype(torch::kLong));
  return 0.5 * (torch::nn::functional::cross_entropy(logits, labels) +
                torch::nn::functional::cross_entropy(logits.t(), labels));
}

}  // namespace clipscale
