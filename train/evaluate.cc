#include "train/evaluate.h"

#include <algorithm>
#include <numeric>

#include <torch/torch.h>

#include "train/batch.h"
#include "train/metrics.h"
#include "train/zeroshot.h"

namespace clipscale {

std::map<std::string, double> Evaluate(ClipModel& model, const ClipTokenizer& tokenizer,
                                       const std::vector<Example>& examples,
                                       const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const ModelConfig& config = model->config();
  std::vector<torch::Tensor> images, texts, labels;
  const auto n = static_cast<int64_t>(examples.size());
  for (int64_t start = 0; start < n; start += options.batch_size) {
    std::vector<int64_t> indices(std::min(options.batch_size, n - start));
    std::iota(indices.begin(), indices.end(), start);
    Batch batch = MakeBatch(examples, indices, config.vision.image_size, tokenizer,
                            config.text.context_length, nullptr);
    images.push_back(model->EncodeImage(batch.images, true));
    texts.push_back(model->EncodeText(batch.tokens, true));
    labels.push_back(batch.labels);
  }
  torch::Tensor image_features = torch::cat(images), text_features = torch::cat(texts);
  std::map<std::string, double> metrics = RetrievalMetrics(image_features, text_features);
  metrics["retrieval_chance_R@1"] = 1.0 / static_cast<double>(n);
  if (!options.classnames.empty()) {
    torch::Tensor all_labels = torch::cat(labels);
    torch::Tensor known = all_labels.ge(0);
    if (known.any().item<bool>()) {
      torch::Tensor classifier =
          BuildZeroShotClassifier(model, tokenizer, options.classnames, options.templates);
      torch::Tensor logits = 100.0 * image_features.index({known}).matmul(classifier);
      for (const auto& [name, value] : ClassificationAccuracy(logits, all_labels.index({known}))) {
        metrics["zeroshot_" + name] = value;
      }
      const double classes = static_cast<double>(options.classnames.size());
      metrics["zeroshot_chance_top1"] = 1.0 / classes;
      metrics["zeroshot_chance_top5"] = std::min(5.0, classes) / classes;
    }
  }
  if (was_training) model->train();
  return metrics;
}

}  // namespace clipscale
