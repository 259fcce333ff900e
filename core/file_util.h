// Whole-file reads and crash-safe writes.
#pragma once

#include <cstdint>
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

// fsyncs the folder `dir` itself, so that entries renamed or created in it
// survive a crash.
absl::Status FsyncDirectory(const std::string& dir);

// Reads exactly `size` bytes at `offset` of the open file `fd`, retrying short
// reads; DataLoss naming `path` when the file ends first or the read fails.
absl::Status PReadFully(int fd, const std::string& path, uint64_t offset, size_t size, char* out);

// A file's size and modification time in nanoseconds (what the dataset index
// records to notice a changed shard). NotFound naming the path.
struct FileStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};
absl::StatusOr<FileStamp> StatFile(const std::string& path);
absl::StatusOr<FileStamp> StatFd(int fd, const std::string& path);

// The same, streamed: bytes go to `<path>.tmp.<pid>` as they are appended;
// Commit() fsyncs, renames and fsyncs the folder. Destroyed uncommitted, the
// temporary file is removed and `path` is untouched.
class AtomicFileWriter {
 public:
  static absl::StatusOr<AtomicFileWriter> Create(const std::string& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
  ~AtomicFileWriter();

  absl::Status Append(const void* data, size_t size);
  absl::Status Append(const std::string& bytes) { return Append(bytes.data(), bytes.size()); }
  // Overwrites bytes already appended (a header placed after its body).
  absl::Status WriteAt(uint64_t offset, const void* data, size_t size);
  absl::Status Commit();
  uint64_t written() const { return written_; }

 private:
  AtomicFileWriter(int fd, std::string path, std::string tmp)
      : fd_(fd), path_(std::move(path)), tmp_(std::move(tmp)) {}
  int fd_ = -1;
  std::string path_, tmp_;
  uint64_t written_ = 0;
};

}  // namespace clipscale
