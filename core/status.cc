#include "core/status.h"

#include <unistd.h>

namespace clipscale {

void FatalError(const char* file, int line, const std::string& message) {
  // Ranks are a distributed/ notion; the launcher exports them to the environment.
  const char* rank = std::getenv("CLIPSCALE_RANK");
  std::fprintf(stderr, "clipscale: FATAL [rank %s] %s:%d: %s\n", rank ? rank : "0", file, line,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

absl::Status Annotate(const absl::Status& status, const std::string& context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace clipscale
