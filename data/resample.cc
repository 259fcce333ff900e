// Pillow's bicubic resampling (libImaging/Resample.c) for 8-bit RGB, reproduced
// operation for operation so the uint8 output is identical: the same double
// arithmetic for the coefficients, the same fixed-point rounding, the same
// order of passes. Only the loop order of the vertical pass differs, which
// cannot change an integer sum (no partial sum can overflow: |sum| <=
// 255 * sum|k| < 2^30).
//
// The coefficients must be computed without fused multiply-add, as Pillow's
// x86-64 build does: GCC and Clang contract a * b + c by default in C++ when
// the target has FMA (e.g. -march=native). Only the (cold) coefficient code is
// marked; a file-wide GCC optimize pragma costs the hot loops ~50%.
#if defined(__clang__)
#define CLIPSCALE_NO_FP_CONTRACT
#define CLIPSCALE_NO_FP_CONTRACT_BODY _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define CLIPSCALE_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#define CLIPSCALE_NO_FP_CONTRACT_BODY
#else
#define CLIPSCALE_NO_FP_CONTRACT
#define CLIPSCALE_NO_FP_CONTRACT_BODY
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/status.h"
#include "data/transforms.h"

namespace clipscale {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

CLIPSCALE_NO_FP_CONTRACT double BicubicFilter(double x) {
  CLIPSCALE_NO_FP_CONTRACT_BODY
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

inline uint8_t Clip8(int32_t sum) {
  int32_t v = sum >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Fixed-point taps for one axis: output index i reads input [start[i],
// start[i] + count[i]) with weights coeffs[i * ksize + j].
struct AxisKernel {
  int ksize = 0;
  std::vector<int> start;
  std::vector<int> count;
  std::vector<int32_t> coeffs;
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for box (0, in_size).
CLIPSCALE_NO_FP_CONTRACT AxisKernel PrecomputeKernel(int in_size, int out_size) {
  CLIPSCALE_NO_FP_CONTRACT_BODY
  constexpr double kSupport = 2.0;  // bicubic
  double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = kSupport * filterscale;
  AxisKernel kernel;
  kernel.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  kernel.start.resize(out_size);
  kernel.count.resize(out_size);
  kernel.coeffs.assign(static_cast<size_t>(out_size) * kernel.ksize, 0);
  std::vector<double> weights(kernel.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    double center = 0.0 + (xx + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      weights[x] = BicubicFilter((x + xmin - center + 0.5) * ss);
      ww += weights[x];
    }
    int32_t* k = &kernel.coeffs[static_cast<size_t>(xx) * kernel.ksize];
    for (int x = 0; x < xmax; ++x) {
      double w = ww != 0.0 ? weights[x] / ww : weights[x];
      k[x] = w < 0 ? static_cast<int32_t>(-0.5 + w * (1 << kPrecisionBits))
                   : static_cast<int32_t>(0.5 + w * (1 << kPrecisionBits));
    }
    kernel.start[xx] = xmin;
    kernel.count[xx] = xmax;
  }
  return kernel;
}

// Rows [first_row, first_row + rows) of `in` resampled horizontally into `out`.
void ResampleHorizontal(const uint8_t* in, int in_width, int first_row, int rows,
                        const AxisKernel& kernel, int out_width, uint8_t* out) {
  for (int y = 0; y < rows; ++y) {
    const uint8_t* src = in + static_cast<size_t>(first_row + y) * in_width * 3;
    uint8_t* dst = out + static_cast<size_t>(y) * out_width * 3;
    for (int xx = 0; xx < out_width; ++xx) {
      const int32_t* k = &kernel.coeffs[static_cast<size_t>(xx) * kernel.ksize];
      const uint8_t* s = src + kernel.start[xx] * 3;
      int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
      for (int x = 0, n = kernel.count[xx]; x < n; ++x, s += 3) {
        s0 += s[0] * k[x];
        s1 += s[1] * k[x];
        s2 += s[2] * k[x];
      }
      dst[xx * 3 + 0] = Clip8(s0);
      dst[xx * 3 + 1] = Clip8(s1);
      dst[xx * 3 + 2] = Clip8(s2);
    }
  }
}

// Vertical pass. Pillow's loop order (each output byte sums its column) reads
// memory with a stride; here each output row is built from whole input rows,
// 16 bytes at a time with the sums in registers, which the compiler turns into
// SIMD code. `row_offset` is the first input row `in` holds.
void ResampleVertical(const uint8_t* in, int width, int row_offset, const AxisKernel& kernel,
                      int out_height, uint8_t* out) {
  constexpr size_t kChunk = 16;
  const size_t row_len = static_cast<size_t>(width) * 3;
  for (int yy = 0; yy < out_height; ++yy) {
    const int32_t* k = &kernel.coeffs[static_cast<size_t>(yy) * kernel.ksize];
    const uint8_t* first = in + (kernel.start[yy] - row_offset) * row_len;
    const int taps = kernel.count[yy];
    uint8_t* dst = out + yy * row_len;
    size_t i = 0;
    for (; i + kChunk <= row_len; i += kChunk) {
      int32_t sums[kChunk];
      for (size_t j = 0; j < kChunk; ++j) sums[j] = kHalf;
      for (int y = 0; y < taps; ++y) {
        const uint8_t* src = first + y * row_len + i;
        const int32_t weight = k[y];
        for (size_t j = 0; j < kChunk; ++j) sums[j] += src[j] * weight;
      }
      for (size_t j = 0; j < kChunk; ++j) dst[i + j] = Clip8(sums[j]);
    }
    for (; i < row_len; ++i) {
      int32_t sum = kHalf;
      for (int y = 0; y < taps; ++y) sum += first[y * row_len + i] * k[y];
      dst[i] = Clip8(sum);
    }
  }
}

}  // namespace

Image Resize(const Image& image, int width, int height) {
  CS_CHECK_MSG(width > 0 && height > 0, "Resize to ", width, "x", height);
  CS_CHECK(image.width > 0 && image.height > 0);
  if (width == image.width && height == image.height) return image;
  const bool need_horizontal = width != image.width;
  const bool need_vertical = height != image.height;
  AxisKernel vertical = PrecomputeKernel(image.height, height);
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width) * height * 3);
  // Pillow 13 runs the vertical pass first when the height shrinks by more than
  // twice what the width does (fewer operations); the order changes the
  // intermediate uint8 rounding, so it must be the same here.
  const bool vertical_first =
      height < image.height && (image.height - height) > 2 * (image.width - width);
  if (vertical_first) {
    if (!need_horizontal) {
      ResampleVertical(image.rgb.data(), image.width, 0, vertical, height, out.rgb.data());
      return out;
    }
    std::vector<uint8_t> temp(static_cast<size_t>(image.width) * height * 3);
    ResampleVertical(image.rgb.data(), image.width, 0, vertical, height, temp.data());
    ResampleHorizontal(temp.data(), image.width, 0, height, PrecomputeKernel(image.width, width),
                       width, out.rgb.data());
    return out;
  }
  // Horizontal first, producing only the rows the vertical pass reads.
  int first_row = 0, rows = image.height;
  if (need_vertical) {
    first_row = vertical.start[0];
    rows = vertical.start[height - 1] + vertical.count[height - 1] - first_row;
  }
  AxisKernel horizontal = PrecomputeKernel(image.width, width);
  if (!need_vertical) {
    ResampleHorizontal(image.rgb.data(), image.width, 0, rows, horizontal, width, out.rgb.data());
    return out;
  }
  std::vector<uint8_t> temp(static_cast<size_t>(width) * rows * 3);
  ResampleHorizontal(image.rgb.data(), image.width, first_row, rows, horizontal, width,
                     temp.data());
  ResampleVertical(temp.data(), width, first_row, vertical, height, out.rgb.data());
  return out;
}

}  // namespace clipscale
