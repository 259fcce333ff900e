#include "core/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace clipscale {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status ErrnoNotFound(const std::string& what, const std::string& path) {
  return absl::NotFoundError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("read error in ", path));
  return out.str();
}

absl::StatusOr<std::vector<std::string>> ReadNonEmptyLines(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::vector<std::string> lines;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

absl::Status PReadFully(int fd, const std::string& path, uint64_t offset, size_t size, char* out) {
  while (size > 0) {
    const ssize_t n = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::DataLossError(absl::StrCat(path, ": cannot read ", size, " bytes at ", offset,
                                              n == 0 ? " (file too short)" : ""));
    }
    out += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

namespace {
FileStamp StampOf(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_size),
          int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}
}  // namespace

absl::StatusOr<FileStamp> StatFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoNotFound("cannot stat", path);
  return StampOf(st);
}

absl::StatusOr<FileStamp> StatFd(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoNotFound("cannot stat", path);
  return StampOf(st);
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  return WriteFileAtomically(path, std::vector<ByteSpan>{{content.data(), content.size()}});
}

absl::Status WriteFileAtomically(const std::string& path, const std::vector<ByteSpan>& pieces) {
  ASSIGN_OR_RETURN(AtomicFileWriter writer, AtomicFileWriter::Create(path));
  for (const ByteSpan& piece : pieces) RETURN_IF_ERROR(writer.Append(piece.data, piece.size));
  return writer.Commit();
}

absl::StatusOr<AtomicFileWriter> AtomicFileWriter::Create(const std::string& path) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  return AtomicFileWriter(fd, path, std::move(tmp));
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      tmp_(std::move(other.tmp_)),
      written_(other.written_) {}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
}

absl::Status AtomicFileWriter::Append(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, std::min<size_t>(size, size_t{1} << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("cannot write", tmp_);
    p += n;
    size -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::WriteAt(uint64_t offset, const void* data, size_t size) {
  if (offset + size > written_) return absl::InternalError("WriteAt past the appended bytes");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd_, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("cannot write", tmp_);
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit() {
  absl::Status status;
  if (::fsync(fd_) != 0) status = ErrnoError("cannot flush", tmp_);
  if (::close(fd_) != 0 && status.ok()) status = ErrnoError("cannot close", tmp_);
  fd_ = -1;
  if (status.ok() && ::rename(tmp_.c_str(), path_.c_str()) != 0) {
    status = ErrnoError("cannot rename onto", path_);
  }
  if (!status.ok()) {
    ::unlink(tmp_.c_str());
    return status;
  }
  // Makes the rename durable: the new directory entry survives a crash.
  std::string dir = std::filesystem::path(path_).parent_path().string();
  return FsyncDirectory(dir.empty() ? "." : dir);
}

absl::Status FsyncDirectory(const std::string& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoError("cannot open folder", dir);
  const int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return ErrnoError("cannot flush folder", dir);
  return absl::OkStatus();
}

}  // namespace clipscale
