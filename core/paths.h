// Finding clipscale's data files (BPE vocabulary, model configs) at run time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

// Folders searched, in order: $CLIPSCALE_DATA_DIR, <exe>/../share/clipscale,
// the build tree's share/clipscale, the install prefix's share/clipscale.
std::vector<std::string> DataSearchPath();

// The first existing `relative` under DataSearchPath(), or NotFound naming all
// places that were tried.
absl::StatusOr<std::string> FindDataFile(std::string_view relative);

}  // namespace clipscale
