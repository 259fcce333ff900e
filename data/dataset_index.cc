#include "data/dataset_index.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/cpu_affinity.h"
#include "core/random.h"
#include "core/crc32c.h"
#include "core/file_util.h"
#include "core/logging.h"
#include "core/status.h"
#include "data/dataset_index.pb.h"
#include "data/shard_cache.h"
#include "data/tar.h"
#include "data/webdataset.h"

namespace clipscale {
namespace {

constexpr char kMagic[8] = {'C', 'S', 'I', 'N', 'D', 'E', 'X', '1'};
constexpr size_t kPreamble = 24;  // magic, header offset, header size
constexpr uint32_t kVersion = 1;
// A header larger than this is not one we wrote (41,000 shards take ~4 MB).
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 30;

void PutU64(char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return v;
}

bool IsImageExtension(const std::string& extension) {
  for (const char* e : kImageExtensions) {
    if (extension == e) return true;
  }
  return false;
}

// Scans one shard into its section and its table entry. Returns true when a
// remote shard's cached copy vanished (evicted) between fetch and scan.
bool IndexShardOnce(const std::string& name, ShardCache* cache, proto::IndexShard* shard,
                    proto::ShardSection* section) {
  shard->set_path(name);
  absl::StatusOr<std::string> local = name;
  if (IsRemoteShard(name)) {
    local = cache ? cache->Fetch(name)
                  : absl::FailedPreconditionError(absl::StrCat(name, ": no shard cache for remote shards"));
  }
  auto info = local.ok() ? StatFile(*local) : absl::StatusOr<FileStamp>(local.status());
  if (!info.ok()) {
    shard->set_error(std::string(info.status().message()));
    shard->mutable_dropped()->set_unreadable_shards(1);
    return IsRemoteShard(name) && local.ok();
  }
  const std::string path = *local;
  shard->set_size(info->size);
  shard->set_mtime_ns(IsRemoteShard(name) ? 0 : info->mtime_ns);
  proto::IndexDropped* dropped = shard->mutable_dropped();
  proto::IndexSample current;
  bool has_image = false;
  auto emit = [&] {
    if (current.members_size() == 0) return;
    if (has_image) {
      *section->add_samples() = std::move(current);
    } else {
      dropped->set_incomplete_samples(dropped->incomplete_samples() + 1);
    }
    current.Clear();
    has_image = false;
  };
  absl::Status status = ScanTar(path, [&](const TarEntry& entry) {
    const size_t slash = entry.name.rfind('/');
    const std::string base = entry.name.substr(slash == std::string::npos ? 0 : slash + 1);
    if (base.size() >= 4 && base.rfind("__", 0) == 0) return absl::OkStatus();
    std::string key, extension;
    if (!SplitMemberName(entry.name, &key, &extension)) return absl::OkStatus();
    if (key != current.key()) {
      emit();
      current.set_key(key);
    }
    for (const auto& m : current.members()) {
      if (m.extension() == extension) {
        dropped->set_duplicate_members(dropped->duplicate_members() + 1);
        return absl::OkStatus();
      }
    }
    proto::IndexMember* member = current.add_members();
    member->set_extension(extension);
    member->set_offset(entry.offset);
    member->set_size(entry.size);
    has_image |= IsImageExtension(extension);
    return absl::OkStatus();
  });
  // The sample before damage is kept when it has an image (a member it lost
  // is then missing at load time, counted and replaced there).
  emit();
  if (!status.ok()) {
    shard->set_error(std::string(status.message()));
    if (status.code() == absl::StatusCode::kDataLoss) {
      dropped->set_truncated_shards(1);
    } else {
      dropped->set_unreadable_shards(1);
    }
  }
  shard->set_samples(static_cast<uint64_t>(section->samples_size()));
  return IsRemoteShard(name) && status.code() == absl::StatusCode::kNotFound;
}

void IndexShard(const std::string& name, ShardCache* cache, proto::IndexShard* shard,
                proto::ShardSection* section) {
  // Another thread's or process's fetch can evict the copy before it is
  // scanned: it is fetched again then, as the loader's reader does.
  for (int attempt = 0; attempt < 3; ++attempt) {
    shard->Clear();
    section->Clear();
    if (!IndexShardOnce(name, cache, shard, section)) return;
  }
}

IndexDropCounts ToCounts(const proto::IndexDropped& d) {
  IndexDropCounts c;
  c.incomplete_samples = static_cast<int64_t>(d.incomplete_samples());
  c.duplicate_members = static_cast<int64_t>(d.duplicate_members());
  c.truncated_shards = static_cast<int64_t>(d.truncated_shards());
  c.unreadable_shards = static_cast<int64_t>(d.unreadable_shards());
  return c;
}

uint64_t HashShard(const IndexedShard& s) {
  const std::string fields = absl::StrCat(s.path, "|", s.size, "|", s.mtime_ns, "|", s.samples,
                                          "|", s.source, "|", s.section_crc32c);
  return Fnv1a64(fields);
}

}  // namespace

const IndexedMember* IndexedSample::Find(const std::string& extension) const {
  for (const auto& m : members) {
    if (m.extension == extension) return &m;
  }
  return nullptr;
}

absl::Status DatasetIndex::Build(const std::string& spec, const std::string& path,
                                 const IndexBuildOptions& options) {
  ASSIGN_OR_RETURN(auto sources, ExpandShardSources(spec));
  std::vector<std::pair<std::string, uint32_t>> shards;
  proto::IndexHeader header;
  header.set_version(kVersion);
  header.set_spec(spec);
  for (size_t s = 0; s < sources.size(); ++s) {
    for (auto& p : sources[s]) shards.emplace_back(std::move(p), static_cast<uint32_t>(s));
  }
  const std::vector<std::string> parts = absl::StrSplit(spec, "::", absl::SkipEmpty());
  for (const auto& part : parts) header.add_sources(part);

  ASSIGN_OR_RETURN(AtomicFileWriter out, AtomicFileWriter::Create(path));
  char preamble[kPreamble] = {};
  RETURN_IF_ERROR(out.Append(preamble, kPreamble));  // filled in once the header is placed
  const int threads = options.threads > 0
                          ? options.threads
                          : AffinityCpuCount();
  // Windows of shards are scanned in parallel, then written in order, so
  // memory holds one window's sections, not the dataset's.
  const size_t window = static_cast<size_t>(threads) * 8;
  for (size_t first = 0; first < shards.size(); first += window) {
    const size_t count = std::min(window, shards.size() - first);
    std::vector<proto::IndexShard> table(count);
    std::vector<proto::ShardSection> sections(count);
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next++) < count;) {
        IndexShard(shards[first + i].first, options.cache, &table[i], &sections[i]);
        table[i].set_source(shards[first + i].second);
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < std::min<int>(threads, static_cast<int>(count)); ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    for (size_t i = 0; i < count; ++i) {
      const std::string bytes = sections[i].SerializeAsString();
      table[i].set_section_offset(out.written());
      table[i].set_section_size(bytes.size());
      table[i].set_section_crc32c(Crc32c(bytes));
      RETURN_IF_ERROR(out.Append(bytes));
      if (!table[i].error().empty()) LogWarning("indexing ", table[i].path(), ": ", table[i].error());
      *header.add_shards() = std::move(table[i]);
    }
  }
  const std::string header_bytes = header.SerializeAsString();
  const uint64_t header_offset = out.written();
  RETURN_IF_ERROR(out.Append(header_bytes));
  std::memcpy(preamble, kMagic, 8);
  PutU64(preamble + 8, header_offset);
  PutU64(preamble + 16, header_bytes.size());
  RETURN_IF_ERROR(out.WriteAt(0, preamble, kPreamble));
  return out.Commit();
}

absl::StatusOr<std::shared_ptr<const DatasetIndex>> DatasetIndex::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open index ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  const bool stat_ok = ::fstat(fd, &st) == 0;
  char preamble[kPreamble];
  absl::Status status = stat_ok ? PReadFully(fd, path, 0, kPreamble, preamble)
                                : absl::DataLossError(absl::StrCat("cannot stat ", path));
  std::string header_bytes;
  if (status.ok()) {
    const uint64_t offset = GetU64(preamble + 8), size = GetU64(preamble + 16);
    const auto file_size = static_cast<uint64_t>(st.st_size);
    if (std::memcmp(preamble, kMagic, 8) != 0) {
      status = absl::InvalidArgumentError(absl::StrCat(path, " is not a clipscale dataset index"));
    } else if (size > kMaxHeaderBytes || offset > file_size || size > file_size - offset) {
      status = absl::DataLossError(absl::StrCat(path, ": index header out of bounds (truncated?)"));
    } else {
      header_bytes.resize(size);
      status = PReadFully(fd, path, offset, size, header_bytes.data());
    }
  }
  ::close(fd);
  RETURN_IF_ERROR(status);
  proto::IndexHeader header;
  if (!header.ParseFromString(header_bytes) || header.version() != kVersion) {
    return absl::DataLossError(absl::StrCat(path, ": unreadable index header (version ",
                                            header.version(), ", want ", kVersion, ")"));
  }
  std::shared_ptr<DatasetIndex> index(new DatasetIndex());
  index->path_ = path;
  index->spec_ = header.spec();
  index->sources_.assign(header.sources().begin(), header.sources().end());
  index->shards_.reserve(header.shards_size());
  index->hash_ = Fnv1a64(absl::StrCat(header.shards_size()));
  for (auto& s : *header.mutable_shards()) {
    IndexedShard shard;
    shard.path = std::move(*s.mutable_path());
    shard.size = s.size();
    shard.mtime_ns = s.mtime_ns();
    shard.samples = static_cast<int64_t>(s.samples());
    shard.source = s.source();
    shard.section_offset = s.section_offset();
    shard.section_size = s.section_size();
    shard.section_crc32c = s.section_crc32c();
    shard.error = std::move(*s.mutable_error());
    shard.dropped = ToCounts(s.dropped());
    if (shard.source >= std::max<size_t>(1, index->sources_.size())) {
      return absl::DataLossError(absl::StrCat(path, ": shard ", shard.path, " names source ",
                                              shard.source, " of ", index->sources_.size()));
    }
    index->total_samples_ += shard.samples;
    index->hash_ = (index->hash_ ^ HashShard(shard)) * 0x100000001b3ULL;
    index->shards_.push_back(std::move(shard));
  }
  return std::shared_ptr<const DatasetIndex>(std::move(index));
}

IndexDropCounts DatasetIndex::dropped() const {
  IndexDropCounts total;
  for (const auto& s : shards_) {
    total.incomplete_samples += s.dropped.incomplete_samples;
    total.duplicate_members += s.dropped.duplicate_members;
    total.truncated_shards += s.dropped.truncated_shards;
    total.unreadable_shards += s.dropped.unreadable_shards;
  }
  return total;
}

uint64_t DatasetIndex::ShardHash(int64_t shard) const { return HashShard(shards_.at(shard)); }

absl::StatusOr<std::vector<IndexedSample>> DatasetIndex::ReadShard(int64_t shard) const {
  const IndexedShard& s = shards_.at(shard);
  std::string bytes(s.section_size, '\0');
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open index ", path_));
  absl::Status status = PReadFully(fd, path_, s.section_offset, s.section_size, bytes.data());
  ::close(fd);
  RETURN_IF_ERROR(status);
  proto::ShardSection section;
  if (Crc32c(bytes) != s.section_crc32c || !section.ParseFromString(bytes) ||
      section.samples_size() != s.samples) {
    return absl::DataLossError(absl::StrCat(path_, ": the section of shard ", s.path, " is corrupt"));
  }
  std::vector<IndexedSample> samples(section.samples_size());
  for (int i = 0; i < section.samples_size(); ++i) {
    auto& in = *section.mutable_samples(i);
    samples[i].key = std::move(*in.mutable_key());
    for (auto& m : *in.mutable_members()) {
      samples[i].members.push_back({std::move(*m.mutable_extension()), m.offset(), m.size()});
    }
  }
  return samples;
}

std::vector<std::string> DatasetIndex::ChangedShards() const {
  std::vector<std::string> changed;
  for (const auto& s : shards_) {
    if (s.dropped.unreadable_shards > 0) continue;  // it had no samples to lose
    if (IsRemoteShard(s.path)) continue;
    auto info = StatFile(s.path);
    if (!info.ok()) {
      changed.push_back(absl::StrCat(s.path, " (gone)"));
    } else if (info->size != s.size) {
      changed.push_back(absl::StrCat(s.path, " (size ", s.size, " -> ", info->size, ")"));
    } else if (info->mtime_ns != s.mtime_ns) {
      changed.push_back(absl::StrCat(s.path, " (modified since indexing)"));
    }
  }
  return changed;
}

absl::StatusOr<std::shared_ptr<const DatasetIndex>> DatasetIndex::OpenOrBuild(
    const std::string& spec, const std::string& cache_dir, const IndexBuildOptions& options) {
  if (spec.size() > 6 && spec.compare(spec.size() - 6, 6, ".index") == 0) {
    ASSIGN_OR_RETURN(auto index, Open(spec));
    const auto changed = index->ChangedShards();
    if (!changed.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          spec, ": ", changed.size(), " shard(s) changed since indexing, e.g. ", changed[0],
          "; rebuild it with `clipscale data index`"));
    }
    return index;
  }
  std::error_code error;
  std::filesystem::create_directories(cache_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the index cache ", cache_dir, ": ", error.message()));
  }
  const std::string base = absl::StrFormat("%s/%016x", cache_dir, Fnv1a64(spec));
  const std::string path = base + ".index";
  // One process per cache builds; the others wait here and reuse its file.
  const int lock = ::open((base + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0) return absl::PermissionDeniedError(absl::StrCat("cannot lock ", base, ".lock"));
  while (::flock(lock, LOCK_EX) != 0 && errno == EINTR) {
  }
  absl::StatusOr<std::shared_ptr<const DatasetIndex>> result;
  auto cached = Open(path);
  if (cached.ok() && (*cached)->spec() == spec) {
    const auto changed = (*cached)->ChangedShards();
    if (changed.empty()) {
      result = std::move(cached);
    } else {
      LogWarning(changed.size(), " shard(s) of ", spec, " changed since they were indexed (",
                 changed[0], changed.size() > 1 ? ", ..." : "", "): indexing again");
    }
  }
  if (!result.ok()) {
    absl::Status built = Build(spec, path, options);
    result = built.ok() ? Open(path) : absl::StatusOr<std::shared_ptr<const DatasetIndex>>(built);
  }
  ::flock(lock, LOCK_UN);
  ::close(lock);
  return result;
}

}  // namespace clipscale
