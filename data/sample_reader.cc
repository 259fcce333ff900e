#include "data/sample_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/random.h"
#include "core/status.h"
#include "data/image.h"
#include "data/transforms.h"
#include "data/webdataset.h"
#include "nlohmann/json.hpp"

namespace clipscale {

struct SampleReader::ShardFile {
  int fd = -1;
  std::string path;
  std::string error;  // set when the shard changed since indexing
  ~ShardFile() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

// A decode thread's image buffers above this are given back after the sample.
constexpr size_t kMaxKeptBufferBytes = size_t{8} << 20;

template <class V, class Map>
bool LruGet(Map& lru, int64_t key, V* out) {
  auto it = lru.where.find(key);
  if (it == lru.where.end()) return false;
  lru.items.splice(lru.items.begin(), lru.items, it->second);
  *out = it->second->second;
  return true;
}

template <class V, class Map>
void LruPut(Map& lru, int64_t key, V value, size_t capacity) {
  if (lru.where.count(key)) return;  // another thread loaded it meanwhile
  lru.items.emplace_front(key, std::move(value));
  lru.where[key] = lru.items.begin();
  while (lru.items.size() > capacity) {
    lru.where.erase(lru.items.back().first);
    lru.items.pop_back();
  }
}

// The label of a sample: `.cls` (CLIP_benchmark's integer text) or the json's
// integer "label"; -1 when neither is there or usable.
int64_t ParseLabel(const std::string* cls, const std::string* json) {
  int64_t label = -1;
  if (cls && absl::SimpleAtoi(absl::StripAsciiWhitespace(*cls), &label) && label >= 0) return label;
  if (json) {
    auto parsed = nlohmann::json::parse(*json, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object() && parsed.contains("label") && parsed["label"].is_number_integer()) {
      label = parsed["label"].get<int64_t>();
      if (label >= 0) return label;
    }
  }
  return -1;
}

}  // namespace

SampleReader::SampleReader(std::shared_ptr<const DatasetIndex> index,
                           const ClipTokenizer* tokenizer, const SampleReaderOptions& options)
    : index_(std::move(index)), tokenizer_(tokenizer), options_(options) {}

absl::StatusOr<std::shared_ptr<const std::vector<IndexedSample>>> SampleReader::Samples(
    int64_t shard) {
  std::shared_ptr<const std::vector<IndexedSample>> samples;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (LruGet(samples_, shard, &samples)) return samples;
  }
  ASSIGN_OR_RETURN(auto read, index_->ReadShard(shard));
  samples = std::make_shared<const std::vector<IndexedSample>>(std::move(read));
  std::lock_guard<std::mutex> lock(mu_);
  LruPut(samples_, shard, samples, static_cast<size_t>(options_.cached_shards));
  return samples;
}

absl::StatusOr<std::shared_ptr<SampleReader::ShardFile>> SampleReader::File(int64_t shard) {
  std::shared_ptr<ShardFile> file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (LruGet(files_, shard, &file)) return file;
  }
  const IndexedShard& info = index_->shards()[shard];
  const bool remote = IsRemoteShard(info.path);
  file = std::make_shared<ShardFile>();
  file->path = info.path;
  // A remote shard's cached copy can be evicted by another process between
  // fetch and open: fetched again then.
  for (int attempt = 0; attempt < 3 && file->fd < 0; ++attempt) {
    absl::StatusOr<std::string> local = info.path;
    if (remote) {
      local = options_.cache ? options_.cache->Fetch(info.path)
                             : absl::FailedPreconditionError("no shard cache for remote shards");
    }
    if (!local.ok()) {
      file->error = std::string(local.status().message());
      break;
    }
    file->fd = ::open(local->c_str(), O_RDONLY | O_CLOEXEC);
    if (file->fd < 0) {
      file->error = absl::StrCat("cannot open shard ", info.path, ": ", std::strerror(errno));
    }
  }
  if (file->fd >= 0) {
    file->error.clear();
    auto stamp = StatFd(file->fd, info.path);
    const bool changed = !stamp.ok() || stamp->size != info.size ||
                         (!remote && stamp->mtime_ns != info.mtime_ns);
    if (changed) file->error = absl::StrCat("shard ", info.path, " changed since it was indexed");
  }
  std::lock_guard<std::mutex> lock(mu_);
  LruPut(files_, shard, file, static_cast<size_t>(options_.open_files));
  return file;
}

absl::Status SampleReader::ReadMember(const ShardFile& file, const IndexedMember& member,
                                      uint64_t limit, std::string* out) {
  if (member.size > limit) {
    return absl::ResourceExhaustedError(absl::StrCat(".", member.extension, " member of ",
                                                     member.size, " bytes exceeds ", limit));
  }
  out->resize(member.size);
  return PReadFully(file.fd, file.path, member.offset, member.size, out->data());
}

BadSample SampleReader::Read(const SampleRef& ref, uint64_t augment_seed, const RowOutput& out,
                             std::string* why) {
  auto samples = Samples(ref.shard);
  if (!samples.ok()) {
    *why = std::string(samples.status().message());
    return BadSample::kShard;
  }
  auto file = File(ref.shard);
  if (!file.ok() || !(*file)->error.empty()) {
    *why = file.ok() ? (*file)->error : std::string(file.status().message());
    return BadSample::kShard;
  }
  const IndexedSample& sample = (**samples)[ref.sample];
  *out.key = sample.key;
  const IndexedMember* image_member = nullptr;
  for (const char* ext : kImageExtensions) {
    if ((image_member = sample.Find(ext))) break;
  }
  const IndexedMember* text = sample.Find("txt");
  // The image's bytes and pixels go to buffers the decode thread keeps (no
  // allocation per sample: glibc gives blocks this large back to the kernel on
  // free, and faulting them in again costs a 256-px JPEG's decode a fifth
  // more); they are given back after an unusually large image.
  thread_local std::string bytes;
  thread_local Image image;
  std::string caption, cls, json;
  absl::Status status;
  if (text == nullptr && options_.require_caption) {
    *why = absl::StrCat(sample.key, ": no .txt caption");
    return BadSample::kCaption;
  }
  if (text) status = ReadMember(**file, *text, kMaxTextMemberBytes, &caption);
  if (text && (!status.ok() || !IsUsableCaption(caption))) {
    *why = absl::StrCat(sample.key, ": ", status.ok() ? "empty or non-UTF-8 caption"
                                                      : std::string(status.message()));
    return BadSample::kCaption;
  }
  if (image_member == nullptr) {  // the index keeps only samples with one
    *why = absl::StrCat(sample.key, ": no image member");
    return BadSample::kImage;
  }
  status = ReadMember(**file, *image_member, kMaxImageMemberBytes, &bytes);
  if (status.ok()) {
    const int min_side = options_.fast_decode ? options_.image_size : 0;
    status = DecodeImageInto(bytes, min_side, &image);
    if (status.ok()) {
      if (options_.augment) {
        SplitMix64 rng(augment_seed);
        TrainTransform(image, options_.image_size, options_.crop, rng, out.image);
      } else {
        EvalTransform(image, options_.image_size, out.image);
      }
    }
  }
  if (bytes.capacity() > kMaxKeptBufferBytes) std::string().swap(bytes);
  if (image.rgb.capacity() > kMaxKeptBufferBytes) image = Image();
  if (!status.ok()) {
    *why = absl::StrCat(sample.key, ".", image_member->extension, ": ", status.message());
    return status.code() == absl::StatusCode::kResourceExhausted ? BadSample::kImageTooLarge
                                                                 : BadSample::kImage;
  }
  const IndexedMember* cls_member = sample.Find("cls");
  const IndexedMember* json_member = sample.Find("json");
  const bool has_cls = cls_member && ReadMember(**file, *cls_member, kMaxTextMemberBytes, &cls).ok();
  const bool has_json =
      json_member && ReadMember(**file, *json_member, kMaxTextMemberBytes, &json).ok();
  *out.label = ParseLabel(has_cls ? &cls : nullptr, has_json ? &json : nullptr);
  std::vector<int32_t> ids = tokenizer_->Tokenize(caption, options_.context_length);
  for (int i = 0; i < options_.context_length; ++i) out.tokens[i] = ids[i];
  *out.caption = std::move(caption);
  return BadSample::kNone;
}

}  // namespace clipscale
