// The dataset index: per shard its path, size, mtime, sample count and, in a
// section of its own, every sample's member offsets and sizes. Built once by
// `clipscale data index` (or on first use, cached), then read per shard on
// demand, so a rank never holds the per-sample records of the whole dataset
// (LAION-400M: 41,000 shards, gigabytes of offsets) — only the shard table.
//
// File layout: "CSINDEX1", u64 header offset, u64 header size (little endian),
// the shard sections (ShardSection messages), then the IndexHeader message
// (data/dataset_index.proto) written last. Sections carry CRC-32C checksums.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipscale {

struct IndexedMember {
  std::string extension;
  uint64_t offset = 0;
  uint64_t size = 0;
};

struct IndexedSample {
  std::string key;
  std::vector<IndexedMember> members;
  // The member with this extension, or nullptr.
  const IndexedMember* Find(const std::string& extension) const;
};

// What indexing dropped, summed over shards (see dataset_index.proto).
struct IndexDropCounts {
  int64_t incomplete_samples = 0, duplicate_members = 0, truncated_shards = 0,
          unreadable_shards = 0;
};

struct IndexedShard {
  std::string path;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t samples = 0;
  uint32_t source = 0;
  uint64_t section_offset = 0, section_size = 0;
  uint32_t section_crc32c = 0;
  std::string error;
  IndexDropCounts dropped;
};

class ShardCache;

struct IndexBuildOptions {
  int threads = 0;  // shards scanned in parallel; 0: the machine's cores
  // Where http(s):// and pipe: shards are fetched to (they are recorded by
  // URL, with the fetched size and mtime 0); null: such shards are unreadable.
  ShardCache* cache = nullptr;
};

// The image members a sample may carry, in the order they are preferred.
inline const char* const kImageExtensions[] = {"jpg", "jpeg", "png", "webp"};

class DatasetIndex {
 public:
  // Scans every shard of `spec` (see ExpandShardSpec) and writes the index to
  // `path` atomically. A shard that cannot be read is recorded with its error
  // and no samples; a truncated one keeps the samples before the damage.
  // A sample needs an image member (kImageExtensions) and a .txt caption;
  // one without is dropped and counted. Repeated keys: WebDataset groups
  // consecutive members by key; a member repeating an extension within a key
  // is dropped and counted (the first one wins).
  static absl::Status Build(const std::string& spec, const std::string& path,
                            const IndexBuildOptions& options = {});

  // Reads the header and shard table of an index file (not the sections).
  static absl::StatusOr<std::shared_ptr<const DatasetIndex>> Open(const std::string& path);

  // The index of `spec`: `spec` itself when it names a .index file; else the
  // index cached in `cache_dir` for this spec, rebuilt (and the changed
  // shards named in a warning) when a shard's size or mtime differ from it.
  // Processes sharing the cache wait for the one that builds it (file lock).
  static absl::StatusOr<std::shared_ptr<const DatasetIndex>> OpenOrBuild(
      const std::string& spec, const std::string& cache_dir, const IndexBuildOptions& options = {});

  const std::vector<IndexedShard>& shards() const { return shards_; }
  const std::vector<std::string>& sources() const { return sources_; }
  const std::string& spec() const { return spec_; }
  const std::string& path() const { return path_; }
  int64_t total_samples() const { return total_samples_; }
  IndexDropCounts dropped() const;
  // A hash of the header (shard paths, sizes, mtimes, counts, section checksums):
  // equal hashes, equal datasets. ShardHash(i) is one shard's part of it.
  uint64_t hash() const { return hash_; }
  uint64_t ShardHash(int64_t shard) const;

  // One shard's samples, read from its section (checksum verified).
  absl::StatusOr<std::vector<IndexedSample>> ReadShard(int64_t shard) const;

  // Local shards whose size or mtime on disk differ from the index (or that
  // are gone), as "path (why)" lines; empty when all match. Remote shards
  // are checked by size when the loader fetches them.
  std::vector<std::string> ChangedShards() const;

 private:
  DatasetIndex() = default;
  std::string path_, spec_;
  std::vector<std::string> sources_;
  std::vector<IndexedShard> shards_;
  int64_t total_samples_ = 0;
  uint64_t hash_ = 0;
};

}  // namespace clipscale
