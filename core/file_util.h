// Whole-file reads and crash-safe writes.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipscale {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// The file's lines without their newlines, empty lines dropped.
absl::StatusOr<std::vector<std::string>> ReadNonEmptyLines(const std::string& path);

// Writes `<path>.tmp.<pid>`, fsyncs it, renames it over `path` and fsyncs the
// folder, so a crash leaves either the old file or the new one, never half.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

// The same for content in pieces (a header and tensor buffers, say), written
// in order without joining them first.
struct ByteSpan {
  const void* data;
  size_t size;
};
absl::Status WriteFileAtomically(const std::string& path, const std::vector<ByteSpan>& pieces);

}  // namespace clipscale
