#include "train/evaluate.h"

#include <algorithm>
#include <numeric>

#include <torch/torch.h>

#include "train/batch.h"
#include "train/metrics.h"
#include "train/zeroshot.h"

namespace clipscale {
namespace {

// This rank's contiguous share [begin, end) of `count` items, ceil(count/W) each.
struct Share {
  int64_t per_rank, begin, end;
};
Share ShareOf(int64_t count, int rank, int ranks) {
  const int64_t per = (count + ranks - 1) / ranks;
  const int64_t begin = std::min(count, rank * per);
  return {per, begin, std::min(count, begin + per)};
}

// Concatenates every rank's rows [m_r, d] (m_r <= per_rank) in rank order and
// keeps the first `count`: shares are contiguous, so padding only follows the
// last real row.
torch::Tensor GatherRows(const torch::Tensor& local, int64_t per_rank, int64_t count,
                         Communicator* comm) {
  if (comm == nullptr || comm->size() == 1) return local;
  torch::Tensor padded = torch::zeros({per_rank, local.size(1)}, local.options());
  padded.narrow(0, 0, local.size(0)).copy_(local);
  return comm->AllGather(padded).narrow(0, 0, count);
}

}  // namespace

std::map<std::string, double> Evaluate(ClipModel& model, const ClipTokenizer& tokenizer,
                                       const std::vector<Example>& examples,
                                       const EvalOptions& options, Communicator* comm) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const ModelConfig& config = model->config();
  const torch::Device device = model->logit_scale().device();
  const torch::TensorOptions feature_options =
      torch::TensorOptions().dtype(model->logit_scale().dtype()).device(device);
  const int rank = comm ? comm->rank() : 0;
  const int ranks = comm ? comm->size() : 1;
  const auto n = static_cast<int64_t>(examples.size());
  const Share share = ShareOf(n, rank, ranks);
  std::vector<torch::Tensor> images{torch::empty({0, config.embed_dim}, feature_options)};
  std::vector<torch::Tensor> texts{torch::empty({0, config.embed_dim}, feature_options)};
  for (int64_t start = share.begin; start < share.end; start += options.batch_size) {
    std::vector<int64_t> indices(std::min(options.batch_size, share.end - start));
    std::iota(indices.begin(), indices.end(), start);
    Batch batch = MakeBatch(examples, indices, config.vision.image_size, tokenizer,
                            config.text.context_length, nullptr);
    images.push_back(model->EncodeImage(batch.images.to(device), true));
    texts.push_back(model->EncodeText(batch.tokens.to(device), true));
  }
  const torch::Tensor local_images = torch::cat(images), local_texts = torch::cat(texts);
  // Every rank holds all embeddings (N×d, small) but ranks only its own queries.
  const torch::Tensor all_images = GatherRows(local_images, share.per_rank, n, comm);
  const torch::Tensor all_texts = GatherRows(local_texts, share.per_rank, n, comm);
  auto gather_ranks = [&](const torch::Tensor& ranks) {  // [m] float64 on the CPU
    torch::Tensor column = ranks.view({-1, 1}).to(device, torch::kFloat64);
    return GatherRows(column, share.per_rank, n, comm).view({-1}).to(torch::kCPU);
  };
  std::map<std::string, double> metrics = RetrievalMetricsFromRanks(
      gather_ranks(PartnerRanks(local_images, all_texts, share.begin)),
      gather_ranks(PartnerRanks(local_texts, all_images, share.begin)));
  metrics["retrieval_chance_R@1"] = 1.0 / static_cast<double>(n);
  torch::Tensor labels = torch::empty({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) labels[i] = examples[i].label;
  torch::Tensor known = labels.ge(0);
  if (!options.classnames.empty() && known.any().item<bool>()) {
    const auto classes = static_cast<int64_t>(options.classnames.size());
    const Share class_share = ShareOf(classes, rank, ranks);
    torch::Tensor local = torch::empty({0, config.embed_dim}, feature_options);
    if (class_share.begin < class_share.end) {
      std::vector<std::string> names(options.classnames.begin() + class_share.begin,
                                     options.classnames.begin() + class_share.end);
      local = BuildZeroShotClassifier(model, tokenizer, names, options.templates).t().contiguous();
    }
    const torch::Tensor classifier = GatherRows(local, class_share.per_rank, classes, comm).t();
    // Each rank classifies its own images; the hits are gathered.
    const torch::Tensor local_labels = labels.narrow(0, share.begin, share.end - share.begin);
    const torch::Tensor hits = TopKHits(100.0 * local_images.matmul(classifier), local_labels);
    const torch::Tensor all_hits =
        GatherRows(hits.to(device), share.per_rank, n, comm).to(torch::kCPU).index({known});
    metrics["zeroshot_top1"] = all_hits.select(1, 0).mean().item<double>();
    metrics["zeroshot_top5"] = all_hits.select(1, 1).mean().item<double>();
    metrics["zeroshot_chance_top1"] = 1.0 / static_cast<double>(classes);
    metrics["zeroshot_chance_top5"] = std::min(5.0, static_cast<double>(classes)) / classes;
  }
  if (was_training) model->train();
  return metrics;
}

}  // namespace clipscale
