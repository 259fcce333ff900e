// The demo training set held in memory: decoded images, captions and labels
// read from WebDataset shards, with bad samples skipped and counted.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/image.h"
#include "data/webdataset.h"

namespace clipscale {

struct Example {
  std::string key;
  Image image;
  std::string caption;
  int label = -1;  // from the sample's json "label", when present
};

// Reads every shard of `spec`: a missing, corrupt or truncated shard, an image
// that does not decode, a missing/empty/non-UTF-8 caption are skipped and
// counted in `stats` (with a warning); an error only when nothing is usable.
absl::StatusOr<std::vector<Example>> LoadExamples(const std::string& spec, DataStats* stats);

// The class names of a labelled split: `classnames` when given, else
// <spec>/classnames.txt when `spec` is a folder holding one (as `data synth`
// writes); an empty list when there is none. Errors only for an unreadable file.
absl::StatusOr<std::vector<std::string>> LoadClassnames(const std::string& spec,
                                                        const std::string& classnames);

}  // namespace clipscale
