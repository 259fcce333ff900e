// Evaluation on benchmark layouts users already have: a CLIP_benchmark
// classification split (.cls labels, classnames.txt and templates beside the
// shards, no captions) and a retrieval split with several captions per image.
// Streamed metrics equal a brute-force computation over the decoded split.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_format.h"
#include "data/image.h"
#include "data/tar.h"
#include "data/transforms.h"
#include "models/model_config.h"
#include "tests/data/loader_fixtures.h"
#include "tests/test_util.h"
#include "train/evaluate.h"
#include "train/zeroshot.h"

namespace clipscale {
namespace {

struct Fixture {
  ClipModel model{nullptr};
  ClipTokenizer tokenizer = *ClipTokenizer::LoadDefault();
  Fixture() {
    torch::manual_seed(0);
    model = ClipModel(*LoadModelConfig("tiny"));
    model->eval();
  }
  torch::Tensor EmbedImages(const std::vector<std::string>& jpegs) {
    torch::NoGradGuard no_grad;
    const int s = model->config().vision.image_size;
    torch::Tensor pixels = torch::empty({static_cast<int64_t>(jpegs.size()), 3, s, s});
    for (size_t i = 0; i < jpegs.size(); ++i) {
      EvalTransform(*DecodeImage(jpegs[i]), s, pixels[i].data_ptr<float>());
    }
    return model->EncodeImage(pixels, true);
  }
};

TEST(EvalSplitTest, ClipBenchmarkClassificationLayout) {
  const std::string dir = testing::MakeTempDir();
  Fixture f;
  std::vector<std::string> jpegs;
  std::vector<int64_t> labels;
  auto writer = TarWriter::Create(dir + "/0.tar");
  ASSERT_TRUE(writer.ok());
  for (int i = 0; i < 21; ++i) {
    jpegs.push_back(testing::TestJpeg(i));
    labels.push_back((i * 7) % 4);
    const std::string key = absl::StrFormat("s%04d", i);
    ASSERT_TRUE(writer->Add(key + ".jpg", jpegs.back()).ok());
    ASSERT_TRUE(writer->Add(key + ".cls", std::to_string(labels.back())).ok());
  }
  ASSERT_TRUE(writer->Close().ok());
  std::ofstream(dir + "/classnames.txt") << "cat\ndog\nbird\nfish\n";
  std::ofstream(dir + "/zeroshot_classification_templates.txt") << "a photo of a {}.\nart of a {}.\n";
  auto split = DatasetIndex::OpenOrBuild(dir, dir + "/cache");
  ASSERT_TRUE(split.ok()) << split.status();
  EvalOptions options;
  options.batch_size = 8;  // three batches, the last partial
  ASSERT_TRUE(LoadSplitClasses(**split, "", &options).ok());
  EXPECT_EQ(options.templates, (std::vector<std::string>{"a photo of a {}.", "art of a {}."}));
  ASSERT_EQ(options.classnames.size(), 4u);
  auto metrics = Evaluate(f.model, f.tokenizer, *split, options);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->count("image_to_text_R@1"), 0u);  // no captions, no retrieval
  // The same by hand: decode, embed, classify.
  torch::NoGradGuard no_grad;
  const torch::Tensor classifier =
      BuildZeroShotClassifier(f.model, f.tokenizer, options.classnames, options.templates);
  const torch::Tensor predicted = f.EmbedImages(jpegs).matmul(classifier).argmax(1);
  const double top1 =
      predicted.eq(torch::tensor(labels, torch::kInt64)).to(torch::kFloat64).mean().item<double>();
  EXPECT_DOUBLE_EQ(metrics->at("zeroshot_top1"), top1);
  EXPECT_DOUBLE_EQ(metrics->at("samples"), 21);
}

TEST(EvalSplitTest, SeveralCaptionsPerImageCountAHitForAnyOfThem) {
  const std::string dir = testing::MakeTempDir();
  Fixture f;
  std::vector<std::string> jpegs;
  std::vector<std::vector<std::string>> captions;
  auto writer = TarWriter::Create(dir + "/0.tar");
  ASSERT_TRUE(writer.ok());
  const char* words[] = {"red", "green", "blue", "small", "large", "dog", "cat", "tree"};
  for (int i = 0; i < 15; ++i) {
    jpegs.push_back(testing::TestJpeg(100 + i));
    captions.emplace_back();
    std::string text;
    for (int c = 0; c < 2 + i % 3; ++c) {
      captions.back().push_back(absl::StrFormat("a %s %s number %d", words[(i + c) % 8],
                                                words[(3 * i + c) % 8], c));
      text += captions.back().back() + "\n";
    }
    const std::string key = absl::StrFormat("r%04d", i);
    ASSERT_TRUE(writer->Add(key + ".jpg", jpegs.back()).ok());
    ASSERT_TRUE(writer->Add(key + ".txt", text).ok());
  }
  ASSERT_TRUE(writer->Close().ok());
  auto split = DatasetIndex::OpenOrBuild(dir, dir + "/cache");
  ASSERT_TRUE(split.ok());
  EvalOptions options;
  options.batch_size = 4;
  auto metrics = Evaluate(f.model, f.tokenizer, *split, options);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  // Brute force: every caption embedded alone; image i's best caption's rank.
  torch::NoGradGuard no_grad;
  const torch::Tensor images = f.EmbedImages(jpegs);
  std::vector<std::string> lines;
  std::vector<int64_t> owner;
  for (size_t i = 0; i < captions.size(); ++i) {
    for (const auto& c : captions[i]) {
      lines.push_back(c);
      owner.push_back(static_cast<int64_t>(i));
    }
  }
  const torch::Tensor texts = f.model->EncodeText(
      TokenizeToTensor(f.tokenizer, lines, f.model->config().text.context_length), true);
  EXPECT_DOUBLE_EQ(metrics->at("retrieval_captions"), static_cast<double>(lines.size()));
  const torch::Tensor scores = images.matmul(texts.t());
  for (int k : {1, 5}) {
    int hits_i2t = 0, hits_t2i = 0;
    for (size_t i = 0; i < jpegs.size(); ++i) {
      // Any of its captions among the k best texts (ties: the earlier text first).
      std::vector<std::pair<float, int64_t>> ranked;
      for (size_t j = 0; j < lines.size(); ++j) ranked.push_back({-scores[i][j].item<float>(), j});
      std::stable_sort(ranked.begin(), ranked.end(),
                       [](auto& a, auto& b) { return a.first < b.first; });
      bool hit = false;
      for (int r = 0; r < k; ++r) hit |= owner[ranked[r].second] == static_cast<int64_t>(i);
      hits_i2t += hit;
    }
    for (size_t j = 0; j < lines.size(); ++j) {
      std::vector<std::pair<float, int64_t>> ranked;
      for (size_t i = 0; i < jpegs.size(); ++i) ranked.push_back({-scores[i][j].item<float>(), i});
      std::stable_sort(ranked.begin(), ranked.end(),
                       [](auto& a, auto& b) { return a.first < b.first; });
      bool hit = false;
      for (int r = 0; r < k; ++r) hit |= ranked[r].second == owner[j];
      hits_t2i += hit;
    }
    EXPECT_DOUBLE_EQ(metrics->at("image_to_text_R@" + std::to_string(k)),
                     hits_i2t / static_cast<double>(jpegs.size()));
    EXPECT_DOUBLE_EQ(metrics->at("text_to_image_R@" + std::to_string(k)),
                     hits_t2i / static_cast<double>(lines.size()));
  }
}

}  // namespace
}  // namespace clipscale
