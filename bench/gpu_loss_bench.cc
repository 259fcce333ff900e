// clipscale's tiled contrastive losses on one CUDA device at large global
// batches: time and peak device memory of forward+backward, as JSON on stdout
// for bench/gpu_bench.py, which measures OpenCLIP's ClipLoss on the same
// device in the same run and prints the ratios.
//
//   gpu_loss_bench [--sizes 32768,65536] [--dim 512] [--tile 1024] [--repeats 3]
//                  [--dtype fp32|bf16]
//
// Peak memory: the caching allocator's peak allocated bytes during the pass
// (statistics reset before it) minus the bytes allocated before it (the
// inputs). Time: the median of `repeats` passes, each ended by a device
// synchronisation. Without a CUDA device it exits with 77 and says so.
#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "distributed/contrastive_loss.h"
#include "distributed/local_communicator.h"

namespace clipscale {
namespace {

struct Options {
  std::vector<int64_t> sizes = {32768, 65536};
  int64_t dim = 512, tile = 1024;
  int repeats = 3;
  at::ScalarType dtype = at::kFloat;
};

bool Parse(int argc, char** argv, Options* o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--sizes") {
      o->sizes.clear();
      for (absl::string_view s : absl::StrSplit(value, ',')) {
        int64_t n = 0;
        if (!absl::SimpleAtoi(s, &n) || n < 2) return false;
        o->sizes.push_back(n);
      }
    } else if (flag == "--dim") {
      if (!absl::SimpleAtoi(value, &o->dim) || o->dim < 1) return false;
    } else if (flag == "--tile") {
      if (!absl::SimpleAtoi(value, &o->tile) || o->tile < 1) return false;
    } else if (flag == "--repeats") {
      if (!absl::SimpleAtoi(value, &o->repeats) || o->repeats < 1) return false;
    } else if (flag == "--dtype" && (value == "fp32" || value == "bf16")) {
      o->dtype = value == "fp32" ? at::kFloat : at::kBFloat16;
    } else {
      return false;
    }
  }
  return argc % 2 == 1;
}

int64_t Allocated(const c10::CachingDeviceAllocator::DeviceStats& s, bool peak) {
  const auto& stat =
      s.allocated_bytes[static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE)];
  return peak ? stat.peak : stat.current;
}

int Main(int argc, char** argv) {
  Options o;
  if (!Parse(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: gpu_loss_bench [--sizes N,N] [--dim D] [--tile T] [--repeats R] "
                 "[--dtype fp32|bf16]\n");
    return 2;
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "gpu_loss_bench: no CUDA device: nothing measured\n");
    return 77;
  }
  const at::Device device(at::kCUDA, 0);
  at::globalContext().setAllowTF32CuBLAS(false);  // fp32 products in fp32
  LocalCommunicator comm;
  nlohmann::json out = {{"dim", o.dim}, {"tile", o.tile}, {"results", nlohmann::json::array()}};
  out["dtype"] = o.dtype == at::kFloat ? "fp32" : "bf16";
  for (int64_t n : o.sizes) {
    auto unit = [&] {
      at::Tensor x = at::randn({n, o.dim}, at::TensorOptions(device));
      return (x / x.norm(2, {1}, true)).to(o.dtype).detach().requires_grad_();
    };
    const at::Tensor image = unit(), text = unit();
    const at::Tensor scale =
        at::full({}, std::log(1 / 0.07), at::TensorOptions(device)).requires_grad_();
    auto pass = [&] {
      TiledClipLoss(image, text, scale, &comm, o.tile).backward();
      at::accelerator::synchronizeDevice(0);
      for (const at::Tensor& t : {image, text, scale}) t.mutable_grad().reset();
    };
    pass();  // warm-up: kernels, cuBLAS handles, the allocator's pools
    std::vector<double> seconds;
    int64_t extra = 0;
    for (int r = 0; r < o.repeats; ++r) {
      at::accelerator::resetPeakStats(0);
      const int64_t before = Allocated(at::accelerator::getDeviceStats(0), false);
      const auto start = std::chrono::steady_clock::now();
      pass();
      seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      extra = std::max(extra, Allocated(at::accelerator::getDeviceStats(0), true) - before);
    }
    std::sort(seconds.begin(), seconds.end());
    out["results"].push_back({{"n", n},
                              {"seconds", seconds[seconds.size() / 2]},
                              {"extra_bytes", extra},
                              {"flops_8n2d", 8.0 * n * n * o.dim}});
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace clipscale

int main(int argc, char** argv) { return clipscale::Main(argc, argv); }
