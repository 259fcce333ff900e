#include "data/shard_cache.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/random.h"
#include "core/status.h"

namespace clipscale {
namespace {

constexpr char kSuffix[] = ".shard";  // complete cached copies; others are temporaries or locks

struct WriteTarget {
  FILE* file;
  uint64_t written = 0, limit = 0;
};

size_t WriteChunk(char* data, size_t size, size_t count, void* user) {
  auto* target = static_cast<WriteTarget*>(user);
  const size_t bytes = size * count;
  target->written += bytes;
  if (target->written > target->limit) return 0;  // aborts the transfer
  return std::fwrite(data, 1, bytes, target->file);
}

// Holds an exclusive flock on `path` while alive.
class FileLock {
 public:
  explicit FileLock(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_ >= 0) {
      while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
      }
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

}  // namespace

bool IsRemoteShard(const std::string& shard) {
  return shard.rfind("http://", 0) == 0 || shard.rfind("https://", 0) == 0 ||
         shard.rfind("pipe:", 0) == 0;
}

std::string ShardCache::CachePath(const std::string& shard) const {
  // The hash keeps names unique and short; the tail keeps them recognisable.
  std::string tail = shard.substr(shard.find_last_of("/ ") == std::string::npos
                                      ? 0
                                      : shard.find_last_of("/ ") + 1);
  for (char& c : tail) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  }
  if (tail.size() > 64) tail.resize(64);
  return absl::StrFormat("%s/%016x-%s%s", options_.dir, Fnv1a64(shard), tail, kSuffix);
}

absl::Status ShardCache::Download(const std::string& shard, const std::string& tmp) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(tmp.c_str(), "wb"), &std::fclose);
  if (!file) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
  WriteTarget target{file.get(), 0, options_.max_bytes};
  if (shard.rfind("pipe:", 0) == 0) {
    FILE* pipe = ::popen(shard.substr(5).c_str(), "r");
    if (!pipe) return absl::InternalError(absl::StrCat(shard, ": cannot start the command"));
    char buffer[1 << 16];
    for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) {
      if (WriteChunk(buffer, 1, n, &target) != n) break;
    }
    const int status = ::pclose(pipe);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (target.written > options_.max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(shard, ": larger than the shard cache"));
    }
    // 141: the command saw SIGPIPE, which WebDataset treats as success too.
    if (code != 0 && code != 141) {
      return absl::UnavailableError(absl::StrCat(shard, ": the command exited with ", code));
    }
  } else {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), &curl_easy_cleanup);
    if (!curl) return absl::InternalError("curl_easy_init failed");
    char error[CURL_ERROR_SIZE] = "";
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, shard.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteChunk);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &target);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options_.connect_timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stall_timeout_s));
    const CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      if (target.written > options_.max_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat(shard, ": larger than the shard cache"));
      }
      return absl::UnavailableError(
          absl::StrCat(shard, ": ", error[0] ? error : curl_easy_strerror(rc)));
    }
  }
  if (std::fflush(file.get()) != 0 || ::fsync(fileno(file.get())) != 0) {
    return absl::DataLossError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void ShardCache::Evict(const std::string& keep) {
  struct Entry {
    std::string path;
    uint64_t size;
    int64_t used_ns;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  std::error_code error;
  for (std::filesystem::directory_iterator it(options_.dir, error), end; !error && it != end;
       it.increment(error)) {
    const std::string path = it->path().string();
    if (path.size() < sizeof kSuffix || path.compare(path.size() - 6, 6, kSuffix) != 0) continue;
    auto stamp = StatFile(path);
    if (!stamp.ok()) continue;  // evicted by another process meanwhile
    entries.push_back({path, stamp->size, stamp->mtime_ns});
    total += stamp->size;
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.used_ns < b.used_ns; });
  // Readers that hold a copy open keep reading it after the unlink.
  for (const Entry& e : entries) {
    if (total <= options_.max_bytes) break;
    if (e.path == keep) continue;
    if (::unlink(e.path.c_str()) == 0) {
      total -= e.size;
      ++evictions_;
    }
  }
}

absl::StatusOr<std::string> ShardCache::Fetch(const std::string& shard) {
  if (!IsRemoteShard(shard)) return shard;
  if (options_.dir.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(shard, ": remote shards need a shard cache folder (data.shard_cache)"));
  }
  std::error_code error;
  std::filesystem::create_directories(options_.dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the shard cache ", options_.dir, ": ", error.message()));
  }
  const std::string path = CachePath(shard);
  FileLock lock(path.substr(0, path.size() - 6) + ".lock");
  if (!lock.ok()) return absl::PermissionDeniedError(absl::StrCat("cannot lock in ", options_.dir));
  if (::utimensat(AT_FDCWD, path.c_str(), nullptr, 0) == 0) return path;  // cached: mark it used
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  absl::Status status = Download(shard, tmp);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = absl::InternalError(absl::StrCat("cannot rename onto ", path));
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  ++fetches_;
  Evict(path);
  return path;
}

}  // namespace clipscale
