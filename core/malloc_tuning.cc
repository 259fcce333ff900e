#include "core/malloc_tuning.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CLIPSCALE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CLIPSCALE_ASAN 1
#endif

namespace clipscale {
namespace {

// A malloc setting the user made, by name, or "" when there is none.
std::string UserMallocSetting() {
  if (const char* mode = std::getenv("CLIPSCALE_MALLOC"); mode && std::strcmp(mode, "system") == 0)
    return "CLIPSCALE_MALLOC=system";
  if (const char* tunables = std::getenv("GLIBC_TUNABLES");
      tunables && std::strstr(tunables, "glibc.malloc.") != nullptr)
    return "GLIBC_TUNABLES";
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                           "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX"}) {
    if (std::getenv(name) != nullptr) return name;
  }
  return "";
}

}  // namespace

MallocTuning KeepFreedMemoryForReuse() {
  if (std::string setting = UserMallocSetting(); !setting.empty()) {
    return {false, setting + " is set: malloc left as the environment tunes it"};
  }
#if defined(CLIPSCALE_ASAN)
  return {false, "the address sanitizer's allocator replaces malloc"};
#else
  // Setting either threshold also stops glibc's own adjustment of them.
  if (mallopt(M_MMAP_THRESHOLD, kKeptMmapThresholdBytes) != 1 ||
      mallopt(M_TRIM_THRESHOLD, kKeptTrimThresholdBytes) != 1) {
    return {false, "mallopt refused the thresholds"};
  }
  return {true, ""};
#endif
}

}  // namespace clipscale
