// CRC-32C (Castagnoli), the checksum TFRecord files use, and TensorFlow's mask
// that keeps a CRC stored next to its own data from checksumming to a constant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace clipscale {

// CRC-32C of `size` bytes, continuing from `crc` (the CRC of the bytes before;
// 0 to start), so Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(const void* data, size_t size) { return Crc32cExtend(0, data, size); }
inline uint32_t Crc32c(const std::string& data) { return Crc32c(data.data(), data.size()); }

// ((crc >> 15) | (crc << 17)) + 0xa282ead8, as tensorflow/core/lib/hash/crc32c.h.
inline uint32_t MaskCrc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

inline uint32_t UnmaskCrc32c(uint32_t masked) {
  uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace clipscale
