// `clipscale embed` and `clipscale zeroshot`.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <torch/torch.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "core/npy.h"
#include "core/status.h"
#include "data/tokenizer.h"
#include "launcher/commands.h"
#include "launcher/model_loading.h"
#include "models/weights_io.h"
#include "train/zeroshot.h"

namespace clipscale::launcher {
namespace {

struct EmbedOptions {
  ModelOptions model;
  std::vector<std::string> images, texts;
  std::string text_file, out, bpe;
  int batch_size = 32;
  bool no_normalize = false;
};

struct ZeroShotOptions {
  ModelOptions model;
  std::vector<std::string> images;
  std::string labels, templates = "simple", bpe;
  int top_k = 5;
};

void AddModelFlags(CLI::App* cmd, ModelOptions* m, std::string* bpe) {
  cmd->add_option("--model", m->model, "Model config name (configs/models) or YAML path")
      ->capture_default_str();
  cmd->add_option("--weights", m->weights, "Weights (.safetensors, OpenCLIP key names)");
  cmd->add_flag("--random-init", m->random_init, "Run without weights (untrained model)");
  cmd->add_option("--set", m->overrides, "Model config override key.path=value (repeatable)");
  cmd->add_option("--bpe", *bpe, "BPE vocabulary (default: bpe_simple_vocab_16e6.txt.gz in the data dir)");
}

absl::StatusOr<ClipTokenizer> LoadTokenizer(const std::string& bpe) {
  return bpe.empty() ? ClipTokenizer::LoadDefault() : ClipTokenizer::Load(bpe);
}

absl::Status SaveEmbeddings(const std::string& path, const torch::Tensor& embeddings) {
  torch::Tensor e = embeddings.to(torch::kFloat32).contiguous().cpu();
  if (absl::EndsWith(path, ".safetensors")) return WriteTensors(path, {{"embeddings", e}});
  if (!absl::EndsWith(path, ".npy")) {
    return absl::InvalidArgumentError(absl::StrCat("--out ", path, ": use .npy or .safetensors"));
  }
  return WriteNpyFloat32(path, {e.size(0), e.size(1)}, e.data_ptr<float>());
}

absl::Status RunEmbed(EmbedOptions o) {
  if (!o.text_file.empty()) {
    std::ifstream in(o.text_file);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", o.text_file));
    for (std::string line; std::getline(in, line);) o.texts.push_back(line);
  }
  if (o.batch_size < 1) return absl::InvalidArgumentError("--batch-size must be at least 1");
  if (o.images.empty() == o.texts.empty()) {
    return absl::InvalidArgumentError("give either --image (images) or --text/--text-file (texts)");
  }
  ASSIGN_OR_RETURN(ClipModel model, LoadModel(o.model));
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  const size_t n = std::max(o.images.size(), o.texts.size());
  std::optional<ClipTokenizer> tokenizer;
  if (!o.texts.empty()) {
    ASSIGN_OR_RETURN(tokenizer, LoadTokenizer(o.bpe));
  }
  for (size_t start = 0; start < n; start += o.batch_size) {
    const size_t end = std::min(n, start + o.batch_size);
    if (!o.images.empty()) {
      std::vector<std::string> paths(o.images.begin() + start, o.images.begin() + end);
      ASSIGN_OR_RETURN(torch::Tensor batch,
                       LoadImageBatch(paths, model->config().vision.image_size));
      parts.push_back(model->EncodeImage(batch, !o.no_normalize));
    } else {
      std::vector<std::string> texts(o.texts.begin() + start, o.texts.begin() + end);
      parts.push_back(model->EncodeText(
          TokenizeToTensor(*tokenizer, texts, model->config().text.context_length),
          !o.no_normalize));
    }
  }
  torch::Tensor all = torch::cat(parts, 0);
  RETURN_IF_ERROR(SaveEmbeddings(o.out, all));
  std::printf("wrote %lld x %lld embeddings to %s\n", static_cast<long long>(all.size(0)),
              static_cast<long long>(all.size(1)), o.out.c_str());
  return absl::OkStatus();
}

absl::Status RunZeroShot(const ZeroShotOptions& o) {
  std::vector<std::string> labels = absl::StrSplit(o.labels, ',', absl::SkipWhitespace());
  for (auto& label : labels) label = std::string(absl::StripAsciiWhitespace(label));
  if (labels.size() < 2) return absl::InvalidArgumentError("--labels needs at least two classes");
  std::vector<std::string> templates;
  std::error_code error;  // --template is a file when one exists by that name
  if (std::filesystem::exists(o.templates, error)) {
    ASSIGN_OR_RETURN(templates, ReadPromptTemplates(o.templates));
  } else {
    ASSIGN_OR_RETURN(templates, PromptTemplates(o.templates));
  }
  ASSIGN_OR_RETURN(ClipModel model, LoadModel(o.model));
  ASSIGN_OR_RETURN(ClipTokenizer tokenizer, LoadTokenizer(o.bpe));
  torch::NoGradGuard no_grad;
  torch::Tensor classifier = BuildZeroShotClassifier(model, tokenizer, labels, templates);
  ASSIGN_OR_RETURN(torch::Tensor images,
                   LoadImageBatch(o.images, model->config().vision.image_size));
  // The model's own learned temperature turns similarities into probabilities.
  torch::Tensor logits = model->EncodeImage(images, true).matmul(classifier) *
                         model->logit_scale().exp();
  torch::Tensor probs = logits.softmax(1);
  const int k = std::min<int>(o.top_k, static_cast<int>(labels.size()));
  auto [values, indices] = probs.topk(k, 1);
  for (size_t i = 0; i < o.images.size(); ++i) {
    std::printf("%s\n", o.images[i].c_str());
    for (int j = 0; j < k; ++j) {
      std::printf("  %6.2f%%  %s\n", 100.0 * values[i][j].item<float>(),
                  labels[indices[i][j].item<int64_t>()].c_str());
    }
  }
  return absl::OkStatus();
}

void Finish(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "clipscale: error: %s\n", std::string(status.message()).c_str());
    SetExitCode(1);
  }
}

}  // namespace

void RegisterInferenceCommands(CLI::App& app) {
  auto embed = std::make_shared<EmbedOptions>();
  CLI::App* e = app.add_subcommand("embed", "Embed images or texts to .npy or .safetensors");
  AddModelFlags(e, &embed->model, &embed->bpe);
  e->add_option("--image", embed->images, "Image files (JPEG, PNG, WebP)");
  e->add_option("--text", embed->texts, "Texts to embed");
  e->add_option("--text-file", embed->text_file, "File with one text per line");
  e->add_option("--out", embed->out, "Output file (.npy or .safetensors)")->required();
  e->add_option("--batch-size", embed->batch_size, "Batch size")->capture_default_str();
  e->add_flag("--no-normalize", embed->no_normalize, "Keep embeddings unnormalised");
  e->callback([embed] { Finish(RunEmbed(*embed)); });

  auto zs = std::make_shared<ZeroShotOptions>();
  CLI::App* z = app.add_subcommand("zeroshot", "Zero-shot classify images against text labels");
  AddModelFlags(z, &zs->model, &zs->bpe);
  z->add_option("--image", zs->images, "Image files")->required();
  z->add_option("--labels", zs->labels, "Comma-separated class names")->required();
  z->add_option("--templates", zs->templates, "Prompt templates: simple, photo, or a file")
      ->capture_default_str();
  z->add_option("--top-k", zs->top_k, "How many classes to print")->capture_default_str();
  z->callback([zs] { Finish(RunZeroShot(*zs)); });
}

}  // namespace clipscale::launcher
