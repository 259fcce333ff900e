#include "train/batch.h"

#include <torch/torch.h>

#include "core/random.h"
#include "data/augment.h"
#include "data/transforms.h"
#include "train/zeroshot.h"

namespace clipscale {

Batch MakeBatch(const std::vector<Example>& examples, const std::vector<int64_t>& indices,
                int image_size, const ClipTokenizer& tokenizer, int context_length,
                const uint64_t* augment_seed) {
  const auto n = static_cast<int64_t>(indices.size());
  Batch batch;
  batch.images = torch::empty({n, 3, image_size, image_size});
  batch.labels = torch::empty({n}, torch::kInt64);
  std::vector<std::string> captions;
  const int64_t plane = 3LL * image_size * image_size;
  float* pixels = batch.images.data_ptr<float>();
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const Example& example = examples[indices[i]];
    if (augment_seed) {
      SplitMix64 rng(MixSeed(*augment_seed, static_cast<uint64_t>(indices[i])));
      TrainTransform(example.image, image_size, RandomResizedCropOptions(), rng, pixels + i * plane);
    } else {
      EvalTransform(example.image, image_size, pixels + i * plane);
    }
    labels[i] = example.label;
    captions.push_back(example.caption);
  }
  batch.tokens = TokenizeToTensor(tokenizer, captions, context_length);
  return batch;
}

}  // namespace clipscale
