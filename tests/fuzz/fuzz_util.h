// Shared by the libFuzzer targets: the readers under test take paths, so each
// input is handed to them as an in-memory file (memfd), never touching disk.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace clipscale::fuzz {

// One memfd per process, rewritten for every input; path() names it for fopen/mmap.
class MemFile {
 public:
  MemFile() : fd_(memfd_create("clipscale-fuzz", 0)) {
    if (fd_ < 0) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& Set(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0 || pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) {
      std::abort();
    }
    return path_;
  }

 private:
  int fd_;
  std::string path_;
};

// A broken promise of the code under test: report it as a crash with a reason.
#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

}  // namespace clipscale::fuzz
