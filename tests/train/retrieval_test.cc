// Retrieval ranks: computed by counting, in row chunks, per rank share; equal
// to a stable descending argsort's positions, ties included.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "train/metrics.h"

namespace clipscale {
namespace {

// The position of each row's partner in a stable descending sort.
torch::Tensor ArgsortRanks(const torch::Tensor& q, const torch::Tensor& c) {
  torch::Tensor order = std::get<1>(q.matmul(c.t()).sort(/*stable=*/true, 1, /*descending=*/true));
  torch::Tensor truth = torch::arange(q.size(0)).view({-1, 1});
  return order.eq(truth).to(torch::kLong).argmax(1).to(torch::kFloat64);
}

TEST(RetrievalTest, CountingEqualsStableArgsortWithDuplicates) {
  torch::manual_seed(3);
  torch::Tensor images = torch::randn({50, 8});
  torch::Tensor texts = torch::randn({50, 8});
  // Identical captions: texts 7, 20 and 41 are one caption, as are 3 and 4.
  texts[20].copy_(texts[7]);
  texts[41].copy_(texts[7]);
  texts[4].copy_(texts[3]);
  images = torch::nn::functional::normalize(images, torch::nn::functional::NormalizeFuncOptions().dim(1));
  texts = torch::nn::functional::normalize(texts, torch::nn::functional::NormalizeFuncOptions().dim(1));
  for (int64_t chunk : {1, 7, 64}) {
    EXPECT_TRUE(torch::equal(PartnerRanks(images, texts, 0, chunk), ArgsortRanks(images, texts)));
    EXPECT_TRUE(torch::equal(PartnerRanks(texts, images, 0, chunk), ArgsortRanks(texts, images)));
  }
  // A rank's share: queries 10..29 against all candidates.
  EXPECT_TRUE(torch::equal(PartnerRanks(images.narrow(0, 10, 20), texts, 10, 6),
                           ArgsortRanks(images, texts).narrow(0, 10, 20)));
  // Image 20's partner ties with text 7 (earlier) and 41 (later): one ahead of it.
  const torch::Tensor scores = images.matmul(texts.t());
  const int64_t better = scores[20].gt(scores[20][20]).sum().item<int64_t>();
  EXPECT_EQ(PartnerRanks(images, texts, 0)[20].item<double>(), better + 1);
}

}  // namespace
}  // namespace clipscale
