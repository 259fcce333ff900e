#include "core/cpu_affinity.h"

#include <unistd.h>

#include <algorithm>

namespace clipscale {

cpu_set_t AffinityMask() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0 || CPU_COUNT(&mask) == 0) {
    CPU_ZERO(&mask);
    const long online = std::clamp(sysconf(_SC_NPROCESSORS_ONLN), 1L, long{CPU_SETSIZE});
    for (long cpu = 0; cpu < online; ++cpu) CPU_SET(cpu, &mask);
  }
  return mask;
}

int AffinityCpuCount() {
  cpu_set_t mask = AffinityMask();
  return std::max(1, CPU_COUNT(&mask));
}

}  // namespace clipscale
