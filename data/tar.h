// POSIX tar archives as WebDataset shards use them: a writer for ustar files
// (deterministic bytes) and a streaming reader that also understands the pax
// and GNU long-name headers that Python's tarfile writes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipscale {

// Writes members into a tar file. Names longer than 100 bytes use the ustar
// prefix field; metadata is fixed (mode 0444, uid/gid 0, constant mtime) so
// the same members give the same bytes.
class TarWriter {
 public:
  static absl::StatusOr<TarWriter> Create(const std::string& path);
  TarWriter(TarWriter&& other) noexcept;
  TarWriter& operator=(TarWriter&&) = delete;
  ~TarWriter();

  absl::Status Add(const std::string& name, const std::string& content);
  // Writes the two zero blocks that end an archive, and closes the file.
  absl::Status Close();

 private:
  TarWriter(FILE* file, std::string path) : file_(file), path_(std::move(path)) {}
  absl::Status Write(const void* data, size_t size);
  FILE* file_ = nullptr;
  std::string path_;
};

// One regular-file member of an archive.
struct TarMember {
  std::string name;
  std::string content;
  int64_t offset = 0;  // byte offset of the member's data in the archive
};

// Calls `visit` for each regular file in order. A corrupt header or a
// truncated archive stops the walk with a DataLoss error naming the offset;
// members already visited stay visited. `visit` returning an error stops too.
absl::Status ReadTar(const std::string& path,
                     const std::function<absl::Status(const TarMember&)>& visit);

}  // namespace clipscale
