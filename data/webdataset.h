// Reading WebDataset shards (tar files of KEY.ext members) as img2dataset
// writes them: member naming, shard specs, and a whole-shard sample reader
// (the streaming loader reads members by the dataset index instead).
#pragma once

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

// Splits a member name into key and extension with WebDataset's rule: the key
// runs to the first dot of the base name (folders included), the extension is
// the rest, lower-cased. Returns false for names without a dot.
bool SplitMemberName(const std::string& name, std::string* key, std::string* extension);

// Calls `visit` for each sample (a run of consecutive members with one key)
// of a shard. Members named __*__ are skipped. A truncated or corrupt shard
// yields the samples before the damage, then returns the DataLoss error.
absl::Status ReadShardSamples(const std::string& path,
                              const std::function<void(ShardSample&&)>& visit);

// Expands a shard spec into paths: a folder (its *.tar, sorted; img2dataset's
// .parquet and _stats.json side files are not shards), a file, a brace range
// "dir/{00000..00009}.tar" (padding kept), http(s):// URLs and pipe:CMD
// (braces expanded in both, see data/shard_cache.h), or several of these
// joined with "::" (the sources, one list each). A spec that expands to more than two
// million names is an InvalidArgument error, checked before expanding.
absl::StatusOr<std::vector<std::vector<std::string>>> ExpandShardSources(
    const std::string& spec);
// All sources' paths, concatenated.
absl::StatusOr<std::vector<std::string>> ExpandShardSpec(const std::string& spec);

// True when `text` is valid UTF-8 with at least one non-space character.
bool IsUsableCaption(const std::string& text);

}  // namespace clipscale
