#include "train/evaluate.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include <torch/torch.h>

#include "core/file_util.h"
#include "core/status.h"
#include "train/host_collectives.h"
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

// Concatenates every rank's rows [m_r, d] in rank order (m_r differs between
// ranks when samples were left out): counts first, then rows padded to the
// largest count.
torch::Tensor GatherRows(const torch::Tensor& local, Communicator* comm) {
  if (comm == nullptr || comm->size() == 1) return local;
  torch::Tensor count = torch::full({1}, local.size(0), torch::kInt64);
  const torch::Tensor counts =
      comm->AllGather(count.to(local.device())).to(torch::kCPU).contiguous();
  const int64_t most = counts.max().item<int64_t>();
  torch::Tensor padded = torch::zeros({most, local.size(1)}, local.options());
  padded.narrow(0, 0, local.size(0)).copy_(local);
  const torch::Tensor all = comm->AllGather(padded);
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < comm->size(); ++r) {
    parts.push_back(all.narrow(0, r * most, counts[r].item<int64_t>()));
  }
  return torch::cat(parts);
}

int64_t Offset(int64_t local_rows, Communicator* comm, const torch::Device& device) {
  if (comm == nullptr || comm->size() == 1) return 0;
  torch::Tensor count = torch::full({1}, local_rows, torch::kInt64);
  const torch::Tensor counts = HostAllGather(count, *comm, device).contiguous();
  return counts.narrow(0, 0, comm->rank()).sum().item<int64_t>();
}

struct Embedded {
  torch::Tensor images, texts, labels;  // valid rows only
  std::vector<std::vector<std::string>> captions;  // each row's caption lines
  int64_t bad = 0;
  bool all_captioned = true;
  bool several_captions = false;  // some row has more than one caption line
};

// A caption text's non-empty lines (Flickr30k/COCO splits keep one per line).
std::vector<std::string> CaptionLines(const std::string& text) {
  std::vector<std::string> lines;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

absl::StatusOr<Embedded> EmbedShare(ClipModel& model, const ClipTokenizer& tokenizer,
                                    std::shared_ptr<const DatasetIndex> split, const Share& share,
                                    const EvalOptions& options) {
  const ModelConfig& config = model->config();
  const torch::Device device = model->logit_scale().device();
  StreamLoaderOptions o;
  o.order.shuffle = false;
  o.range_begin = share.begin;
  o.range_end = share.end;
  o.slice_size = std::max<int64_t>(1, options.batch_size);
  o.image_size = config.vision.image_size;
  o.context_length = config.text.context_length;
  o.augment = false;
  o.fast_decode = false;  // bit-identical to Pillow + torchvision
  o.replace_bad = false;
  o.workers = options.workers;
  o.cache = options.cache;
  ASSIGN_OR_RETURN(auto loader, StreamLoader::Create(split, &tokenizer, o));
  const torch::TensorOptions feature_options =
      torch::TensorOptions().dtype(model->logit_scale().dtype()).device(device);
  std::vector<torch::Tensor> images{torch::empty({0, config.embed_dim}, feature_options)};
  std::vector<torch::Tensor> texts = images, labels{torch::empty({0}, torch::kInt64)};
  Embedded out;
  const int64_t s = o.image_size;
  while (true) {
    ASSIGN_OR_RETURN(std::shared_ptr<LoadedBatch> batch, loader->Next());
    if (!batch) break;
    std::vector<int64_t> keep;
    for (int64_t r = 0; r < batch->rows; ++r) {
      if (batch->valid[r]) {
        keep.push_back(r);
        out.captions.push_back(CaptionLines(batch->captions[r]));
        out.all_captioned &= !out.captions.back().empty();
        out.several_captions |= out.captions.back().size() > 1;
      } else {
        ++out.bad;
      }
    }
    if (keep.empty()) continue;
    const torch::Tensor rows = torch::tensor(keep, torch::kInt64);
    const torch::Tensor pixels =
        torch::from_blob(batch->images, {batch->rows, 3, s, s}, torch::kFloat32).index_select(0, rows);
    const torch::Tensor tokens =
        torch::from_blob(batch->tokens, {batch->rows, o.context_length}, torch::kInt64)
            .index_select(0, rows);
    // In the weights' dtype (bf16 under pure_bf16); embeddings compared in fp32.
    images.push_back(model->EncodeImage(pixels.to(device, model->logit_scale().scalar_type()), true)
                         .to(torch::kFloat));
    texts.push_back(model->EncodeText(tokens.to(device), true).to(torch::kFloat));
    labels.push_back(torch::from_blob(batch->labels, {batch->rows}, torch::kInt64).index_select(0, rows));
  }
  out.images = torch::cat(images);
  out.texts = torch::cat(texts);
  out.labels = torch::cat(labels);
  return out;
}

}  // namespace

absl::StatusOr<std::map<std::string, double>> Evaluate(
    ClipModel& model, const ClipTokenizer& tokenizer, std::shared_ptr<const DatasetIndex> split,
    const EvalOptions& options, Communicator* comm) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const ModelConfig& config = model->config();
  const torch::Device device = model->logit_scale().device();
  const int rank = comm ? comm->rank() : 0;
  const int ranks = comm ? comm->size() : 1;
  const Share share = ShareOf(split->total_samples(), rank, ranks);
  auto embedded = EmbedShare(model, tokenizer, split, share, options);
  // Every rank reaches the collectives below, also when its share failed.
  torch::Tensor failed = torch::full({1}, embedded.ok() ? 0.0 : 1.0, torch::kFloat64);
  if (comm) HostAllReduce(failed, ReduceOp::kMax, *comm, device);
  if (!embedded.ok()) return embedded.status();
  if (failed.item<double>() > 0) return absl::InternalError("evaluation failed on another rank");
  Embedded& e = *embedded;
  torch::Tensor totals = torch::tensor(
      {static_cast<double>(e.images.size(0)), static_cast<double>(e.bad),
       e.all_captioned ? 0.0 : 1.0, e.several_captions ? 1.0 : 0.0},
      torch::kFloat64);
  if (comm) HostAllReduce(totals, ReduceOp::kSum, *comm, device);
  const auto n = static_cast<int64_t>(totals[0].item<double>());
  std::map<std::string, double> metrics;
  metrics["bad_samples"] = totals[1].item<double>();
  metrics["samples"] = static_cast<double>(n);
  if (n == 0) {
    if (was_training) model->train();
    return absl::NotFoundError("no usable samples in the evaluation split");
  }
  // Every rank holds all embeddings (N×d, small) but ranks only its own queries.
  const int64_t offset = Offset(e.images.size(0), comm, device);
  const torch::Tensor all_images = GatherRows(e.images, comm);
  const torch::Tensor all_texts = GatherRows(e.texts, comm);
  auto gather_ranks = [&](const torch::Tensor& partner_ranks) {  // [m] float64 on the CPU
    torch::Tensor column = partner_ranks.view({-1, 1}).to(device, torch::kFloat64);
    return GatherRows(column, comm).view({-1}).to(torch::kCPU);
  };
  if (totals[2].item<double>() == 0 && totals[3].item<double>() == 0) {
    // One caption per image: the pairs' partner ranks both ways.
    metrics.merge(RetrievalMetricsFromRanks(gather_ranks(PartnerRanks(e.images, all_texts, offset)),
                                            gather_ranks(PartnerRanks(e.texts, all_images, offset))));
    metrics["retrieval_chance_R@1"] = 1.0 / static_cast<double>(n);
  } else if (totals[2].item<double>() == 0) {
    // Several captions per image, each embedded on its own (CLIP_benchmark's counting).
    std::vector<std::string> lines;
    std::vector<int64_t> owners;
    for (size_t i = 0; i < e.captions.size(); ++i) {
      for (const auto& line : e.captions[i]) {
        lines.push_back(line);
        owners.push_back(offset + static_cast<int64_t>(i));
      }
    }
    std::vector<torch::Tensor> parts{torch::empty({0, config.embed_dim}, e.images.options())};
    for (size_t start = 0; start < lines.size(); start += options.batch_size) {
      const std::vector<std::string> chunk(
          lines.begin() + start, lines.begin() + std::min(lines.size(), start + options.batch_size));
      parts.push_back(
          model
              ->EncodeText(
                  TokenizeToTensor(tokenizer, chunk, config.text.context_length).to(device), true)
              .to(torch::kFloat));
    }
    const torch::Tensor local_texts = torch::cat(parts);
    const torch::Tensor local_owners = torch::tensor(owners, torch::kInt64);
    const torch::Tensor texts = GatherRows(local_texts, comm);
    const torch::Tensor text_owners =
        GatherRows(local_owners.view({-1, 1}).to(device, torch::kFloat64), comm).view({-1});
    metrics.merge(RetrievalMetricsFromRanks(
        gather_ranks(BestPositiveRanks(e.images, texts, text_owners, offset)),
        gather_ranks(PartnerRanksAt(local_texts, all_images, local_owners))));
    metrics["retrieval_chance_R@1"] = 1.0 / static_cast<double>(n);
    metrics["retrieval_captions"] = static_cast<double>(texts.size(0));
  }
  torch::Tensor known_local = e.labels.ge(0).to(torch::kFloat64).sum().view({1});
  if (comm) HostAllReduce(known_local, ReduceOp::kSum, *comm, device);
  if (!options.classnames.empty() && known_local.item<double>() > 0) {
    const auto classes = static_cast<int64_t>(options.classnames.size());
    const Share class_share = ShareOf(classes, rank, ranks);
    const torch::TensorOptions feature_options =
        torch::TensorOptions().dtype(model->logit_scale().dtype()).device(device);
    torch::Tensor local = torch::empty({0, config.embed_dim}, feature_options);
    if (class_share.begin < class_share.end) {
      std::vector<std::string> names(options.classnames.begin() + class_share.begin,
                                     options.classnames.begin() + class_share.end);
      local = BuildZeroShotClassifier(model, tokenizer, names, options.templates).t().contiguous();
    }
    const torch::Tensor classifier = GatherRows(local, comm).t();
    // Each rank classifies its own images; the hits are gathered.
    const torch::Tensor known = e.labels.ge(0);
    const torch::Tensor hits =
        TopKHits(100.0 * e.images.index({known.to(device)}).matmul(classifier), e.labels.index({known}));
    const torch::Tensor all_hits = GatherRows(hits.to(device), comm).to(torch::kCPU);
    metrics["zeroshot_top1"] = all_hits.select(1, 0).mean().item<double>();
    metrics["zeroshot_top5"] = all_hits.select(1, 1).mean().item<double>();
    metrics["zeroshot_chance_top1"] = 1.0 / static_cast<double>(classes);
    metrics["zeroshot_chance_top5"] = std::min(5.0, static_cast<double>(classes)) / classes;
  }
  if (was_training) model->train();
  return metrics;
}

absl::Status LoadSplitClasses(const DatasetIndex& split, const std::string& classnames,
                              EvalOptions* options) {
  std::string folder;
  if (!split.shards().empty()) {
    folder = std::filesystem::path(split.shards().front().path).parent_path().string();
  }
  auto beside = [&](const char* name) -> std::string {
    if (folder.empty()) return "";
    const std::string path = (std::filesystem::path(folder) / name).string();
    std::error_code error;
    return std::filesystem::exists(path, error) ? path : "";
  };
  const std::string names = classnames.empty() ? beside("classnames.txt") : classnames;
  if (!names.empty()) {
    ASSIGN_OR_RETURN(options->classnames, ReadNonEmptyLines(names));
  }
  if (options->templates.empty()) {
    const std::string templates = beside("zeroshot_classification_templates.txt");
    if (!templates.empty()) {
      ASSIGN_OR_RETURN(options->templates, ReadNonEmptyLines(templates));
    } else {
      options->templates = {"a photo of a {}."};
    }
  }
  return absl::OkStatus();
}

}  // namespace clipscale
