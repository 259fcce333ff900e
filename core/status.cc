#include "core/status.h"

#include <unistd.h>

#include <atomic>

namespace clipscale {
namespace {

// -1: not set yet. Atomic because CHECKs also fail on other threads (loader,
// NCCL watchdog).
std::atomic<int> g_rank{-1};

}  // namespace

void SetFatalErrorRank(int rank) { g_rank.store(rank); }

void FatalError(const char* file, int line, const std::string& message) {
  // Ranks are a distributed/ notion: main and the communicator factory tell us.
  int rank = g_rank.load();
  if (rank < 0) {
    const char* env = std::getenv("CLIPSCALE_RANK");
    rank = env ? std::atoi(env) : 0;
  }
  std::fprintf(stderr, "clipscale: FATAL [rank %d] %s:%d: %s\n", rank, file, line,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

absl::Status Annotate(const absl::Status& status, const std::string& context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace clipscale
