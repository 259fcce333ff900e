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

// Where one regular-file member's bytes lie in an archive (no data read).
struct TarEntry {
  std::string name;
  uint64_t offset = 0;  // byte offset of the member's data in the archive
  uint64_t size = 0;
};

// Walks the headers of an archive without reading member data: `visit` gets
// each regular file in order. Every size a header claims is checked against
// the file's size before it is believed, so a lying header costs nothing.
// pax `path`/`size` records and GNU `L` long names apply to the next member.
// An archive that ends (at a block boundary) without its two zero blocks is
// accepted, as Python's tarfile accepts it; a corrupt header or a member cut
// short stops the walk with DataLoss naming the byte offset, after the members
// before it were visited. `visit` returning an error stops the walk too.
absl::Status ScanTar(const std::string& path,
                     const std::function<absl::Status(const TarEntry&)>& visit);

// One regular-file member of an archive.
struct TarMember {
  std::string name;
  std::string content;
  int64_t offset = 0;  // byte offset of the member's data in the archive
};

// ScanTar, with each member's data read (only after its size was checked).
absl::Status ReadTar(const std::string& path,
                     const std::function<absl::Status(const TarMember&)>& visit);

}  // namespace clipscale
