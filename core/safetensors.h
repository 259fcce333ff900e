// The safetensors file format (https://github.com/huggingface/safetensors),
// without LibTorch: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the tensor bytes, offsets relative to the first byte after the header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipscale {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32", "BF16", ... as spelled in the file; bytes per element.
const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);
absl::StatusOr<DType> ParseDType(const std::string& name);

// One tensor: a view of bytes owned elsewhere (the reader's mapping, or the
// caller's buffer when writing). Data is little-endian, row-major, contiguous.
struct TensorRecord {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

// Product of the dimensions (1 for a scalar).
int64_t NumElements(const std::vector<int64_t>& shape);

// A validated, memory-mapped safetensors file. Movable; the records' data
// pointers stay valid for the reader's lifetime (also across moves).
class SafetensorsReader {
 public:
  // Maps the file and checks everything a corrupt or hostile file can break:
  // header length beyond the file, non-JSON or mis-typed header, unknown dtype,
  // byte size != prod(shape) * itemsize, offsets out of range, overlapping or
  // leaving holes. Errors name the file and the tensor.
  static absl::StatusOr<SafetensorsReader> Open(const std::string& path);

  // Sorted by name.
  const std::vector<TensorRecord>& tensors() const { return tensors_; }
  const TensorRecord* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  std::vector<TensorRecord> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (any order; stored sorted by name, as the Python library
// does) atomically: <path>.tmp, fsync, rename, fsync of the folder. The header
// is padded with spaces to a multiple of 8 bytes. Refuses duplicate names and
// records whose nbytes does not match shape and dtype.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorRecord>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace clipscale
