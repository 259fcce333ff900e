// glibc's malloc hands every block above its mmap threshold (128 KiB, rising
// to at most 32 MiB) back to the kernel when it is freed, and trims the heap's
// free top beyond twice that. A CPU training step allocates and frees the same
// activation and gradient tensors (tens of MB) every step, so each step
// page-faults them in again: about 5 % of a `tiny-rn` step's cycles in the
// kernel, 17 % of its throughput (bench/train_bench.py). jemalloc/tcmalloc
// setups, as PyTorch's CPU tuning guide recommends, avoid this by keeping
// freed memory; this does the same with glibc's own malloc.
#pragma once

#include <string>

namespace clipscale {

// Above these a block is mmapped / the heap's free top is returned.
// (ints: what mallopt takes).
inline constexpr int kKeptMmapThresholdBytes = 256 << 20;
inline constexpr int kKeptTrimThresholdBytes = 1 << 30;

struct MallocTuning {
  bool applied = false;
  std::string reason;  // why not, when not applied
};

// Raises glibc's mmap and trim thresholds to the constants above, so freed
// blocks stay in the process for the next step, unless the environment
// already tunes malloc (GLIBC_TUNABLES naming glibc.malloc, the MALLOC_*
// variables glibc reads) or CLIPSCALE_MALLOC=system asks for glibc's
// defaults. Call once, at start-up, before any thread allocates.
MallocTuning KeepFreedMemoryForReuse();

}  // namespace clipscale
