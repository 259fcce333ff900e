#include "train/zeroshot.h"

#include <algorithm>
#include <fstream>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace clipscale {

absl::StatusOr<std::vector<std::string>> PromptTemplates(const std::string& name) {
  if (name == "simple") {
    return std::vector<std::string>{
        "itap of a {}.",          "a bad photo of the {}.", "a origami {}.",
        "a photo of the large {}.", "a {} in a video game.", "art of the {}.",
        "a photo of the small {}."};
  }
  if (name == "photo") return std::vector<std::string>{"a photo of a {}."};
  return absl::InvalidArgumentError(
      absl::StrCat("unknown template set '", name, "' (known: simple, photo; or a file path)"));
}

absl::StatusOr<std::vector<std::string>> ReadPromptTemplates(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open template file ", path));
  std::vector<std::string> templates;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    if (line.find("{}") == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", number, ": template has no {} placeholder: ", line));
    }
    templates.push_back(line);
  }
  if (templates.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no templates"));
  return templates;
}

torch::Tensor TokenizeToTensor(const ClipTokenizer& tokenizer,
                               const std::vector<std::string>& texts, int context_length) {
  std::vector<int32_t> ids(texts.size() * context_length);
  tokenizer.TokenizeBatch(texts, context_length, ids.data());
  return torch::from_blob(ids.data(), {static_cast<int64_t>(texts.size()), context_length},
                          torch::kInt32)
      .to(torch::kInt64);
}

torch::Tensor BuildZeroShotClassifier(ClipModel& model, const ClipTokenizer& tokenizer,
                                      const std::vector<std::string>& classnames,
                                      const std::vector<std::string>& templates,
                                      int classes_per_batch) {
  torch::NoGradGuard no_grad;
  const int context = model->config().text.context_length;
  const auto num_templates = static_cast<int64_t>(templates.size());
  std::vector<torch::Tensor> columns;
  for (size_t start = 0; start < classnames.size(); start += classes_per_batch) {
    const size_t end = std::min(classnames.size(), start + classes_per_batch);
    std::vector<std::string> texts;
    for (size_t c = start; c < end; ++c) {
      for (const std::string& t : templates) {
        texts.push_back(absl::StrReplaceAll(t, {{"{}", classnames[c]}}));
      }
    }
    torch::Tensor emb =
        model->EncodeText(TokenizeToTensor(tokenizer, texts, context), true).to(torch::kFloat);
    emb = emb.reshape({static_cast<int64_t>(end - start), num_templates, -1}).mean(1);
    columns.push_back(emb / emb.norm(2, {1}, true));
  }
  return torch::cat(columns, 0).t().contiguous();
}

}  // namespace clipscale
