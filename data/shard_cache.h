// Shards that are not local files: `http(s)://` URLs (fetched with libcurl) and
// `pipe:CMD` (the command's standard output, as WebDataset reads it). Their
// bytes are fetched once per node into a cache folder with a size limit; the
// least recently used shards are evicted to make room. Positioned reads need
// a file, so the loader and the indexer read the cached copy.
//
// Processes sharing the folder (the ranks of a node) fetch each shard once:
// a per-shard file lock serialises them, and a copy appears only complete
// (written under a temporary name, then renamed).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace clipscale {

// True for `http://`, `https://` and `pipe:` shards.
bool IsRemoteShard(const std::string& shard);

struct ShardCacheOptions {
  std::string dir;                            // "": remote shards are an error
  uint64_t max_bytes = uint64_t{64} << 30;    // evict beyond this
  double connect_timeout_s = 30;
  double stall_timeout_s = 120;               // a transfer slower than 1 KB/s this long fails
};

class ShardCache {
 public:
  explicit ShardCache(const ShardCacheOptions& options) : options_(options) {}

  // A local file with the shard's bytes: `shard` itself when it is a local
  // path; else the cached copy, fetched first when absent (then evicting the
  // least recently used copies beyond max_bytes, never the one returned).
  // Errors name the shard: an HTTP status, a command's exit status, a full cache.
  absl::StatusOr<std::string> Fetch(const std::string& shard);

  // The cached copy's path for a remote shard (whether or not it exists).
  std::string CachePath(const std::string& shard) const;
  int64_t fetches() const { return fetches_; }
  int64_t evictions() const { return evictions_; }

 private:
  absl::Status Download(const std::string& shard, const std::string& tmp);
  void Evict(const std::string& keep);

  ShardCacheOptions options_;
  std::atomic<int64_t> fetches_{0}, evictions_{0};
};

}  // namespace clipscale
