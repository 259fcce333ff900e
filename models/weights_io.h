// Weights as safetensors files with OpenCLIP's state-dict key names, so a file
// written by `safetensors.torch.save_file(model.state_dict(), ...)` loads here
// and ours load in Python.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace clipscale {

// Every parameter and buffer, keyed by its dotted path ("transformer.resblocks.0.ln_1.weight").
// Modules register only persistent buffers (OpenCLIP's non-persistent attn_mask is
// not registered), so this matches Python's `module.state_dict()` key for key,
// BatchNorm's int64 num_batches_tracked included. Tensors alias the module's.
std::map<std::string, at::Tensor> StateDict(const torch::nn::Module& module);

// Saves StateDict(module) with each tensor's dtype kept (copied to CPU, contiguous).
absl::Status SaveWeights(const torch::nn::Module& module, const std::string& path,
                         const std::map<std::string, std::string>& metadata = {});

// Strict import: the file's keys must equal StateDict(module)'s and every shape
// must match; otherwise nothing is changed and the error lists (up to a few dozen)
// missing keys, unexpected keys and shape mismatches together. Values are copied
// into the module's tensors in place (their device kept) under NoGradGuard; a file
// dtype different from the tensor's (e.g. bf16 file into an fp32 model) is converted.
absl::Status LoadWeights(torch::nn::Module& module, const std::string& path);

// Whole-file read into CPU tensors that own their memory (the file is not kept open).
absl::StatusOr<std::map<std::string, at::Tensor>> ReadTensors(const std::string& path);

// Writes CPU or device tensors (copied to CPU, contiguous), dtypes kept. Only the
// dtypes safetensors shares with LibTorch (f64 f32 f16 bf16 i64 i32 i16 i8 u8 bool).
absl::Status WriteTensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                          const std::map<std::string, std::string>& metadata = {});

}  // namespace clipscale
