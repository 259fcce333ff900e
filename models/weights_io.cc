#include "models/weights_io.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/safetensors.h"
#include "core/status.h"

namespace clipscale {
namespace {

// Beyond this many names per kind of problem, a list stops helping.
constexpr size_t kMaxListed = 20;

std::optional<at::ScalarType> ToScalarType(DType dtype) {
  switch (dtype) {
    case DType::kF64:
      return at::kDouble;
    case DType::kF32:
      return at::kFloat;
    case DType::kF16:
      return at::kHalf;
    case DType::kBF16:
      return at::kBFloat16;
    case DType::kI64:
      return at::kLong;
    case DType::kI32:
      return at::kInt;
    case DType::kI16:
      return at::kShort;
    case DType::kI8:
      return at::kChar;
    case DType::kU8:
      return at::kByte;
    case DType::kBool:
      return at::kBool;
  }
  return std::nullopt;
}

std::optional<DType> ToDType(at::ScalarType type) {
  for (DType dtype : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32,
                      DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    if (ToScalarType(dtype) == type) return dtype;
  }
  return std::nullopt;
}

// A CPU tensor viewing the record's bytes, or a copy when they are not aligned
// to the element size (files from writers that do not order by alignment).
at::Tensor ViewRecord(const TensorRecord& record) {
  const at::ScalarType type = *ToScalarType(record.dtype);
  const auto options = at::TensorOptions().dtype(type);
  if (reinterpret_cast<uintptr_t>(record.data) % DTypeSize(record.dtype) == 0) {
    return at::from_blob(const_cast<uint8_t*>(record.data), record.shape, options);
  }
  at::Tensor copy = at::empty(record.shape, options);
  std::memcpy(copy.data_ptr(), record.data, record.nbytes);
  return copy;
}

std::string ShapeString(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

void AddList(const std::string& title, const std::vector<std::string>& items,
             std::vector<std::string>* lines) {
  if (items.empty()) return;
  std::vector<std::string> shown(items.begin(), items.begin() + std::min(items.size(), kMaxListed));
  std::string line = absl::StrCat(items.size(), " ", title, ": ", absl::StrJoin(shown, ", "));
  if (items.size() > kMaxListed)
    absl::StrAppend(&line, ", ... (", items.size() - kMaxListed, " more)");
  lines->push_back(std::move(line));
}

// Compares the file's keys and shapes with the module's, naming every difference.
absl::Status CheckMatches(const SafetensorsReader& reader,
                          const std::map<std::string, at::Tensor>& state) {
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, tensor] : state) {
    const TensorRecord* record = reader.Find(name);
    if (record == nullptr) {
      missing.push_back(name);
    } else if (tensor.sizes() != at::IntArrayRef(record->shape)) {
      mismatched.push_back(absl::StrCat(name, " (file ", ShapeString(record->shape), ", model ",
                                        ShapeString(tensor.sizes()), ")"));
    }
  }
  for (const TensorRecord& record : reader.tensors()) {
    if (state.count(record.name) == 0) unexpected.push_back(record.name);
  }
  std::vector<std::string> lines;
  AddList("missing keys", missing, &lines);
  AddList("unexpected keys", unexpected, &lines);
  AddList("shape mismatches", mismatched, &lines);
  if (lines.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      reader.path(), ": weights do not match the model:\n  ", absl::StrJoin(lines, "\n  ")));
}

}  // namespace

std::map<std::string, at::Tensor> StateDict(const torch::nn::Module& module) {
  std::map<std::string, at::Tensor> state;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    state[item.key()] = item.value();
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    state[item.key()] = item.value();
  }
  return state;
}

absl::Status SaveWeights(const torch::nn::Module& module, const std::string& path,
                         const std::map<std::string, std::string>& metadata) {
  return WriteTensors(path, StateDict(module), metadata);
}

absl::Status LoadWeights(torch::nn::Module& module, const std::string& path) {
  ASSIGN_OR_RETURN(const SafetensorsReader reader, SafetensorsReader::Open(path));
  const std::map<std::string, at::Tensor> state = StateDict(module);
  RETURN_IF_ERROR(CheckMatches(reader, state));
  try {
    torch::NoGradGuard no_grad;
    for (const auto& [name, tensor] : state) {
      // copy_ converts dtype and moves to the tensor's device in one step.
      tensor.copy_(ViewRecord(*reader.Find(name)));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(path, ": loading weights failed: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, at::Tensor>> ReadTensors(const std::string& path) {
  ASSIGN_OR_RETURN(const SafetensorsReader reader, SafetensorsReader::Open(path));
  std::map<std::string, at::Tensor> tensors;
  // The shapes come from the file: LibTorch's own checks (or its allocator)
  // may refuse them.
  try {
    for (const TensorRecord& record : reader.tensors()) {
      at::Tensor tensor =
          at::empty(record.shape, at::TensorOptions().dtype(*ToScalarType(record.dtype)));
      if (record.nbytes > 0) std::memcpy(tensor.data_ptr(), record.data, record.nbytes);
      tensors.emplace(record.name, std::move(tensor));
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": reading tensors failed: ", e.what_without_backtrace()));
  }
  return tensors;
}

absl::Status WriteTensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> host;  // keeps the CPU copies alive while writing
  std::vector<TensorRecord> records;
  host.reserve(tensors.size());
  try {
    for (const auto& [name, tensor] : tensors) {
      const std::optional<DType> dtype = ToDType(tensor.scalar_type());
      if (!dtype) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", name, "' has dtype ",
                         std::string(c10::toString(tensor.scalar_type())),
                         ", which safetensors files do not store"));
      }
      host.push_back(tensor.detach().to(at::kCPU).contiguous());
      const at::Tensor& cpu = host.back();
      records.push_back({name, *dtype, cpu.sizes().vec(),
                         static_cast<const uint8_t*>(cpu.data_ptr()), cpu.nbytes()});
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(path, ": copying tensors to host failed: ", e.what_without_backtrace()));
  }
  return WriteSafetensors(path, records, metadata);
}

}  // namespace clipscale
