// NumPy .npy files (format 1.0, little-endian, C order): what `clipscale embed`
// writes so that numpy.load reads it directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipscale {

struct NpyArray {
  std::string descr;            // "<f4", "<f8", "<i8", "<i4", "|u1"
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;   // row-major data
};

// Writes atomically (temporary file, then rename).
absl::Status WriteNpy(const std::string& path, const NpyArray& array);
absl::Status WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape,
                             const float* data);
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

}  // namespace clipscale
