// Hostile safetensors files: the reader either refuses them or returns tensors
// that tile the file's data bytes exactly and whose every byte can be read.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

using clipscale::fuzz::MemFile;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MemFile file;
  auto reader = clipscale::SafetensorsReader::Open(file.Set(data, size));
  if (!reader.ok()) {
    FUZZ_CHECK(reader.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(size >= 8);
  uint64_t header_size = 0;
  std::memcpy(&header_size, data, 8);  // little-endian host
  uint64_t covered = 0;
  unsigned sum = 0;
  for (const clipscale::TensorRecord& t : reader->tensors()) {
    FUZZ_CHECK(static_cast<uint64_t>(clipscale::NumElements(t.shape)) *
                   clipscale::DTypeSize(t.dtype) ==
               t.nbytes);
    FUZZ_CHECK(reader->Find(t.name) == &t);
    for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];  // faults if outside the mapping
    covered += t.nbytes;
  }
  FUZZ_CHECK(covered == size - 8 - header_size);
  volatile unsigned sink = sum;
  (void)sink;
  return 0;
}
