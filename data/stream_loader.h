// The streaming loader: reads the samples of one consumer's rows of each step
// straight from the shards (positioned reads by the dataset index's offsets),
// decodes, augments and tokenises them on a pool of threads, and hands out
// preallocated batches, a bounded number of steps ahead. Memory does not grow
// with the dataset: a few shards' sample tables, the batch buffers, and the
// epoch order (data/sample_order.h).
//
// It knows no ranks. Training: step k of an epoch covers the epoch's positions
// [k·B, (k+1)·B); a consumer asks for rows [slice_begin, slice_begin + slice_size)
// of every step (rank r of W: r·B/W and B/W), so the ranks' slices, concatenated,
// are the one-process batch, for every W that divides B. The tail of an epoch
// that does not fill a global batch is dropped (a different tail each epoch,
// since the order is reshuffled). Evaluation: a contiguous range of positions
// in index order, in batches of slice_size, the last one partial.
//
// The whole state is (seed, epoch, step): Seek(epoch, step) yields exactly what
// an uninterrupted run yields from there. Everything a row holds — which
// sample, its crop, its replacement when the sample is bad — is a pure
// function of (index, seed, epoch, position), never of thread timing or W.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/augment.h"
#include "data/dataset_index.h"
#include "data/sample_order.h"
#include "data/shard_cache.h"
#include "data/tokenizer.h"

namespace clipscale {

struct StreamLoaderOptions {
  SampleOrderOptions order;
  // Training: B positions per step, this consumer's rows of each. drop tail.
  int64_t global_batch = 0;
  int64_t slice_begin = 0;
  int64_t slice_size = 0;
  // Evaluation (global_batch == 0): positions [range_begin, range_end) in
  // batches of slice_size; range_end < 0 means the end of the dataset.
  int64_t range_begin = 0;
  int64_t range_end = -1;

  int image_size = 224;
  bool augment = true;    // RandomResizedCrop (train); false: OpenCLIP's eval transform
  RandomResizedCropOptions crop;
  // JPEGs decoded at the largest 1/2, 1/4, 1/8 scale that keeps the short
  // side >= image_size (Pillow's draft mode); false: full decode, bit-identical
  // to Pillow + torchvision.
  bool fast_decode = true;
  int context_length = ClipTokenizer::kDefaultContextLength;

  int workers = 0;         // decode threads; 0: the machine's cores
  int prefetch_steps = 2;  // batches decoded ahead
  int worker_nice = 10;    // decode threads' nice value above the process's (0: same)
  // A bad sample is replaced by another drawn deterministically from its
  // position (training); with false, its row is marked invalid (evaluation).
  bool replace_bad = true;
  int max_replacements = 16;
  ShardCache* cache = nullptr;  // for http(s):// and pipe: shards; must outlive the loader
  // Batch buffer allocation (pinned host memory on CUDA); default: new[].
  std::function<std::shared_ptr<void>(size_t bytes)> allocate;
};

// One consumer's rows of one step.
struct LoadedBatch {
  int64_t epoch = 0, step = 0;
  int64_t rows = 0;
  float* images = nullptr;    // [rows, 3, S, S], normalised, CHW
  int64_t* tokens = nullptr;  // [rows, context_length]
  int64_t* labels = nullptr;  // [rows]; -1 when the sample has none
  std::vector<uint8_t> valid;          // 0: bad sample, not replaced (evaluation)
  std::vector<std::string> keys;       // the sample keys (after replacement)
  std::vector<std::string> captions;   // the caption text as stored
};

// Why samples were skipped, over the batches handed out so far (each rank
// its own; the same numbers on every run).
struct BadDataCounts {
  int64_t samples = 0;            // rows delivered
  int64_t replaced = 0;           // rows that hold a replacement
  int64_t unreplaceable = 0;      // rows left invalid / zero after max_replacements
  int64_t bad_image = 0;          // corrupt, truncated, zero-byte or not an image
  int64_t bad_image_too_large = 0;  // decompression bombs, oversized members
  int64_t bad_caption = 0;        // missing, empty or not UTF-8
  int64_t bad_shard = 0;          // unreadable, or changed since indexing
  std::map<std::string, int64_t> bad_by_shard;  // bad samples (each try) by shard path
  // Name -> count with the `data/bad_*` names the metrics use.
  std::map<std::string, int64_t> ByName() const;
};

class StreamLoader {
 public:
  // `tokenizer` must outlive the loader.
  static absl::StatusOr<std::unique_ptr<StreamLoader>> Create(
      std::shared_ptr<const DatasetIndex> index, const ClipTokenizer* tokenizer,
      const StreamLoaderOptions& options);
  ~StreamLoader();

  // Steps in `epoch`: floor(epoch size / B) when training, ceil(range / slice)
  // when evaluating. A pure function of the index and the options.
  absl::StatusOr<int64_t> StepsInEpoch(int64_t epoch) const;
  // Positions the loader at (epoch, step); the next Next() returns that step.
  absl::Status Seek(int64_t epoch, int64_t step);
  // The next step's batch (blocking until it is decoded). Evaluation: nullptr
  // after the last batch. Training wraps to the next epoch. The batch's memory
  // returns to the loader when the pointer is released.
  absl::StatusOr<std::shared_ptr<LoadedBatch>> Next();

  BadDataCounts counts() const;
  const StreamLoaderOptions& options() const { return options_; }

  struct State;  // shared with the workers and the batches handed out

 private:
  StreamLoader() = default;
  StreamLoaderOptions options_;
  std::shared_ptr<State> state_;
};

}  // namespace clipscale
