// Reads one indexed sample from its shard and turns it into a batch row:
// image -> decoded, cropped (or eval-transformed), normalised floats; caption ->
// CLIP token ids; label from `.cls` or the json's "label". Thread-safe; the
// streaming loader's workers share one. Keeps a few shards' sample tables and
// open files (LRU), so memory stays bounded whatever the dataset's size.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "data/augment.h"
#include "data/dataset_index.h"
#include "data/sample_order.h"
#include "data/shard_cache.h"
#include "data/tokenizer.h"

namespace clipscale {

struct SampleReaderOptions {
  int image_size = 224;
  bool augment = true;
  RandomResizedCropOptions crop;
  bool fast_decode = true;
  int context_length = ClipTokenizer::kDefaultContextLength;
  // Training needs a caption; a classification split (CLIP_benchmark's .cls
  // shards) may have none: the row then gets an empty caption.
  bool require_caption = true;
  ShardCache* cache = nullptr;  // for http(s):// and pipe: shards
  int cached_shards = 16;  // sample tables kept in memory
  int open_files = 64;
};

// Why a sample could not be used; decides the counter it goes to.
enum class BadSample { kNone, kImage, kImageTooLarge, kCaption, kShard };

struct RowOutput {
  float* image = nullptr;     // 3 * S * S floats
  int64_t* tokens = nullptr;  // context_length ids
  int64_t* label = nullptr;
  std::string* key = nullptr;
  std::string* caption = nullptr;
};

// Image members above this are refused before they are read (the largest
// image Pillow opens, 179 Mpx, is far smaller as a JPEG).
inline constexpr uint64_t kMaxImageMemberBytes = uint64_t{256} << 20;
inline constexpr uint64_t kMaxTextMemberBytes = uint64_t{1} << 20;

class SampleReader {
 public:
  SampleReader(std::shared_ptr<const DatasetIndex> index, const ClipTokenizer* tokenizer,
               const SampleReaderOptions& options);

  // Fills `out` for the sample `ref`; the crop draws from `augment_seed`.
  // On failure returns why (and a message in *why); `out` may be half written.
  BadSample Read(const SampleRef& ref, uint64_t augment_seed, const RowOutput& out,
                 std::string* why);

 private:
  struct ShardFile;
  absl::StatusOr<std::shared_ptr<const std::vector<IndexedSample>>> Samples(int64_t shard);
  absl::StatusOr<std::shared_ptr<ShardFile>> File(int64_t shard);
  absl::Status ReadMember(const ShardFile& file, const IndexedMember& member, uint64_t limit,
                          std::string* out);

  std::shared_ptr<const DatasetIndex> index_;
  const ClipTokenizer* tokenizer_;
  SampleReaderOptions options_;

  template <class V>
  struct Lru {
    std::list<std::pair<int64_t, V>> items;  // most recent first
    std::unordered_map<int64_t, typename std::list<std::pair<int64_t, V>>::iterator> where;
  };
  std::mutex mu_;
  Lru<std::shared_ptr<const std::vector<IndexedSample>>> samples_;
  Lru<std::shared_ptr<ShardFile>> files_;
};

}  // namespace clipscale
