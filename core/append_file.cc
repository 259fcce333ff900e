#include "core/append_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace clipscale {

absl::StatusOr<std::unique_ptr<AppendFile>> AppendFile::Open(const std::string& path,
                                                             bool exclusive,
                                                             const FlushPolicy& policy) {
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (exclusive ? O_EXCL : 0);
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<AppendFile>(new AppendFile(fd, path, policy));
}

AppendFile::AppendFile(int fd, std::string path, const FlushPolicy& policy)
    : fd_(fd), path_(std::move(path)), policy_(policy) {}

AppendFile::~AppendFile() { ::close(fd_); }

void AppendFile::Append(const std::string& bytes) {
  if (!status_.ok()) return;
  const auto now = std::chrono::steady_clock::now();
  if (buffer_.empty()) oldest_buffered_ = now;
  buffer_.append(bytes);
  const std::chrono::duration<double> age = now - oldest_buffered_;
  if (buffer_.size() >= policy_.max_buffered_bytes || age.count() >= policy_.interval_seconds) {
    Flush().IgnoreError();  // kept in status_ and reported by the owner's next Flush()
  }
}

absl::Status AppendFile::Flush() {
  if (!status_.ok()) return status_;
  size_t written = 0;
  while (written < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + written, buffer_.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      status_ = absl::InternalError(
          absl::StrCat("cannot write ", path_, ": ", n < 0 ? std::strerror(errno) : "no progress"));
      buffer_.clear();
      return status_;
    }
    written += static_cast<size_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

}  // namespace clipscale
