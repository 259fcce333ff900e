// Reading WebDataset shards (tar files of KEY.ext members) as img2dataset
// writes them. This is the minimal reader the training loop uses on the demo
// data; the streaming loader builds on ReadShardSamples and ExpandShardSpec.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipscale {

// One sample: the members sharing a key, by lower-cased extension
// ("jpg" -> bytes, "txt" -> caption, "json" -> metadata).
struct ShardSample {
  std::string key;
  std::map<std::string, std::string> fields;
};

// Counts of what was read and what was skipped, reported in the metrics.
struct DataStats {
  std::atomic<int64_t> samples{0};
  std::atomic<int64_t> bad_shards{0};         // missing, corrupt or truncated .tar
  std::atomic<int64_t> missing_fields{0};     // no image or no caption
  std::atomic<int64_t> bad_images{0};         // failed to decode
  std::atomic<int64_t> bad_captions{0};       // empty or not UTF-8
};

// Splits a member name into key and extension with WebDataset's rule: the key
// runs to the first dot of the base name (folders included), the extension is
// the rest, lower-cased. Returns false for names without a dot.
bool SplitMemberName(const std::string& name, std::string* key, std::string* extension);

// Calls `visit` for each sample (a run of consecutive members with one key)
// of a shard. Members named __*__ are skipped. A truncated or corrupt shard
// yields the samples before the damage, then returns the DataLoss error.
absl::Status ReadShardSamples(const std::string& path,
                              const std::function<void(ShardSample&&)>& visit);

// Expands a shard spec into paths: a folder (its *.tar, sorted), a file, a
// brace range "dir/{00000..00009}.tar" (padding kept), or several of these
// joined with "::".
absl::StatusOr<std::vector<std::string>> ExpandShardSpec(const std::string& spec);

// True when `text` is valid UTF-8 with at least one non-space character.
bool IsUsableCaption(const std::string& text);

}  // namespace clipscale
