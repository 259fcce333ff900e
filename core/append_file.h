// A buffered, append-only file for logs that are written a little at a time
// (metrics, event files): bytes collect in memory and reach the kernel when
// enough have piled up, when enough time has passed, or on Flush().
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipscale {

struct FlushPolicy {
  // Checked on each Append (there is no background thread): buffered bytes are
  // written once the oldest of them is this old. 0 writes on every Append.
  double interval_seconds = 10.0;
  size_t max_buffered_bytes = size_t{1} << 16;
};

class AppendFile {
 public:
  // Opens (creating it if needed) `path` for appending. With `exclusive`, an
  // existing file is an error rather than appended to.
  static absl::StatusOr<std::unique_ptr<AppendFile>> Open(const std::string& path, bool exclusive,
                                                          const FlushPolicy& policy);
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  // Closes without flushing: owners call Flush() first so they can report errors.
  ~AppendFile();

  // Buffers `bytes` and writes the buffer out if the policy says it is time.
  // A write error is kept and returned by Flush().
  void Append(const std::string& bytes);

  // Hands every buffered byte to the kernel (no fsync: a crashed process loses
  // nothing, only a crashed machine can). The first write error sticks: later
  // bytes are dropped and every Flush() returns it.
  absl::Status Flush();

  const std::string& path() const { return path_; }

 private:
  AppendFile(int fd, std::string path, const FlushPolicy& policy);

  int fd_;
  std::string path_;
  FlushPolicy policy_;
  std::string buffer_;
  std::chrono::steady_clock::time_point oldest_buffered_;
  absl::Status status_;
};

}  // namespace clipscale
