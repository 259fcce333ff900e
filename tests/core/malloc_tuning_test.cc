// KeepFreedMemoryForReuse: a large block freed after it stays in the heap for
// the next allocation (what a training step's tensors need), and a malloc
// setting the user made in the environment is left alone.
#include "core/malloc_tuning.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <stdlib.h>

#include <cstring>

namespace clipscale {
namespace {

class MallocTuningTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const char* name : {"CLIPSCALE_MALLOC", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX"})
      unsetenv(name);
  }
};

TEST_F(MallocTuningTest, SettingsFromTheEnvironmentAreLeftAlone) {
  setenv("CLIPSCALE_MALLOC", "system", 1);
  MallocTuning tuning = KeepFreedMemoryForReuse();
  EXPECT_FALSE(tuning.applied);
  EXPECT_NE(tuning.reason.find("CLIPSCALE_MALLOC=system"), std::string::npos) << tuning.reason;
  unsetenv("CLIPSCALE_MALLOC");

  setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=4096", 1);
  tuning = KeepFreedMemoryForReuse();
  EXPECT_FALSE(tuning.applied);
  EXPECT_NE(tuning.reason.find("GLIBC_TUNABLES"), std::string::npos) << tuning.reason;
  unsetenv("GLIBC_TUNABLES");

  setenv("MALLOC_ARENA_MAX", "2", 1);
  tuning = KeepFreedMemoryForReuse();
  EXPECT_FALSE(tuning.applied);
  EXPECT_NE(tuning.reason.find("MALLOC_ARENA_MAX"), std::string::npos) << tuning.reason;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CLIPSCALE_TEST_ASAN 1
#endif
#endif

#if defined(CLIPSCALE_TEST_ASAN)
TEST_F(MallocTuningTest, UnderTheAddressSanitizerMallocIsNotGlibcs) {
  const MallocTuning tuning = KeepFreedMemoryForReuse();
  EXPECT_FALSE(tuning.applied);
  EXPECT_NE(tuning.reason.find("sanitizer"), std::string::npos) << tuning.reason;
}
#else
// Larger than glibc's highest default mmap threshold (32 MiB): by default it
// is mmapped and unmapped again on free.
constexpr size_t kBlockBytes = 100u << 20;

// Allocates, touches and frees one block; reports whether it was mmapped and
// how much of the heap stayed in the process after the free.
struct BlockCycle {
  bool mmapped = false;
  size_t heap_after_free = 0;
};
BlockCycle AllocateTouchFree() {
  const size_t mmapped_before = mallinfo2().hblks;
  void* volatile block = std::malloc(kBlockBytes);
  std::memset(block, 1, kBlockBytes);
  BlockCycle cycle;
  cycle.mmapped = mallinfo2().hblks > mmapped_before;
  std::free(block);
  cycle.heap_after_free = mallinfo2().arena;
  return cycle;
}

TEST_F(MallocTuningTest, AFreedLargeBlockStaysInTheHeap) {
  // glibc's default first: the block is mmapped and leaves with the free.
  const BlockCycle before = AllocateTouchFree();
  EXPECT_TRUE(before.mmapped);
  EXPECT_LT(before.heap_after_free, kBlockBytes);

  const MallocTuning tuning = KeepFreedMemoryForReuse();
  ASSERT_TRUE(tuning.applied) << tuning.reason;
  for (int cycle = 0; cycle < 2; ++cycle) {
    const BlockCycle after = AllocateTouchFree();
    EXPECT_FALSE(after.mmapped) << "cycle " << cycle;
    EXPECT_GE(after.heap_after_free, kBlockBytes) << "cycle " << cycle;
  }
}
#endif

}  // namespace
}  // namespace clipscale
