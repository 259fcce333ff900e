// Pillow's bicubic resampling (libImaging/Resample.c) for 8-bit RGB, reproduced
// operation for operation so the uint8 output is identical: the same double
// arithmetic for the coefficients, the same fixed-point rounding, the same
// order of passes. Only the loop orders differ (the horizontal pass runs as a
// vertical one over transposed pixels), which cannot change an integer sum (no
// partial sum can overflow: |sum| <= 255 * sum|k| < 2^30).
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
#include <cstring>
#include <memory>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/status.h"
#include "data/image_codecs.h"
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

// PrecomputeKernel's result for (in_size, out_size), from a per-thread cache:
// a training crop's sizes repeat across images, and computing the taps of both
// axes takes ~0.007 ms, a tenth of a 256-px crop's resize. Small kernels only,
// at most kEntries of them; the least recently used goes first.
std::shared_ptr<const AxisKernel> CachedKernel(int in_size, int out_size) {
  constexpr size_t kEntries = 64;
  constexpr size_t kMaxCachedCoefficients = size_t{1} << 14;
  struct Entry {
    int in_size, out_size;
    uint64_t used;
    std::shared_ptr<const AxisKernel> kernel;
  };
  thread_local std::vector<Entry> cache;
  thread_local uint64_t clock = 0;
  ++clock;
  for (Entry& e : cache) {
    if (e.in_size == in_size && e.out_size == out_size) {
      e.used = clock;
      return e.kernel;
    }
  }
  auto kernel = std::make_shared<const AxisKernel>(PrecomputeKernel(in_size, out_size));
  if (kernel->coeffs.size() > kMaxCachedCoefficients) return kernel;
  if (cache.size() < kEntries) {
    cache.push_back({in_size, out_size, clock, kernel});
  } else {
    *std::min_element(cache.begin(), cache.end(), [](const Entry& a, const Entry& b) {
      return a.used < b.used;
    }) = {in_size, out_size, clock, kernel};
  }
  return kernel;
}

// Rows of interleaved RGB pixels, `stride` bytes apart (a whole image, or a
// window of one).
struct ByteRows {
  const uint8_t* data;
  size_t stride;
};

#if defined(__GNUC__) && defined(__x86_64__)
// Eight bytes at p as eight 32-bit lanes.
__attribute__((target("avx2"))) inline __m256i EightBytes(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// Bytes [0, row_bytes - row_bytes % 32) of ResampleVertical's output row:
// 32 sums at a time in four registers of eight 32-bit lanes, each input byte
// zero-extended straight from memory; the clip to 0..255 is the saturation of
// two packs (a sum shifted down fits in 16 bits). Returns the bytes done.
__attribute__((target("avx2"))) size_t VerticalRowAvx2(const uint8_t* first, size_t stride,
                                                       const int32_t* k, int taps,
                                                       size_t row_bytes, uint8_t* dst) {
  const __m256i half = _mm256_set1_epi32(kHalf);
  size_t i = 0;
  for (; i + 32 <= row_bytes; i += 32) {
    __m256i s0 = half, s1 = half, s2 = half, s3 = half;
    const uint8_t* src = first + i;
    for (int y = 0; y < taps; ++y, src += stride) {
      const __m256i w = _mm256_set1_epi32(k[y]);
      s0 = _mm256_add_epi32(s0, _mm256_mullo_epi32(EightBytes(src), w));
      s1 = _mm256_add_epi32(s1, _mm256_mullo_epi32(EightBytes(src + 8), w));
      s2 = _mm256_add_epi32(s2, _mm256_mullo_epi32(EightBytes(src + 16), w));
      s3 = _mm256_add_epi32(s3, _mm256_mullo_epi32(EightBytes(src + 24), w));
    }
    // The packs work within 128-bit lanes, so the bytes come out in groups of
    // four: s0[0..3] s1[0..3] s2[0..3] s3[0..3] s0[4..7] s1[4..7] ...; one
    // permute of 32-bit groups puts them back in order.
    const __m256i words01 = _mm256_packs_epi32(_mm256_srai_epi32(s0, kPrecisionBits),
                                               _mm256_srai_epi32(s1, kPrecisionBits));
    const __m256i words23 = _mm256_packs_epi32(_mm256_srai_epi32(s2, kPrecisionBits),
                                               _mm256_srai_epi32(s3, kPrecisionBits));
    const __m256i bytes = _mm256_packus_epi16(words01, words23);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm256_permutevar8x32_epi32(bytes, order));
  }
  return i;
}
#endif

// Vertical pass: output row yy sums input rows [start, start + count) of
// `in` (whose first row is input row `row_offset`) with the row's taps. Pillow's
// loop order (each output byte sums its column) reads memory with a stride;
// here each output row is built from whole input rows, 32 bytes at a time with
// the sums in registers: with AVX2 where the CPU has it, otherwise in a loop
// the compiler vectorises for the baseline target.
void ResampleVertical(ByteRows in, size_t row_bytes, int row_offset, const AxisKernel& kernel,
                      int out_height, uint8_t* out) {
#if defined(__GNUC__) && defined(__x86_64__)
  const bool avx2 = image_internal::UseAvx2();
#endif
  for (int yy = 0; yy < out_height; ++yy) {
    const int32_t* k = &kernel.coeffs[static_cast<size_t>(yy) * kernel.ksize];
    const uint8_t* first = in.data + (kernel.start[yy] - row_offset) * in.stride;
    const int taps = kernel.count[yy];
    uint8_t* dst = out + yy * row_bytes;
    size_t i = 0;
#if defined(__GNUC__) && defined(__x86_64__)
    if (avx2) i = VerticalRowAvx2(first, in.stride, k, taps, row_bytes, dst);
#endif
    constexpr size_t kChunk = 32;
    for (; i + kChunk <= row_bytes; i += kChunk) {
      int32_t sums[kChunk];
      for (size_t j = 0; j < kChunk; ++j) sums[j] = kHalf;
      for (int y = 0; y < taps; ++y) {
        const uint8_t* src = first + y * in.stride + i;
        const int32_t weight = k[y];
        for (size_t j = 0; j < kChunk; ++j) sums[j] += src[j] * weight;
      }
      for (size_t j = 0; j < kChunk; ++j) dst[i + j] = Clip8(sums[j]);
    }
    for (; i < row_bytes; ++i) {
      int32_t sum = kHalf;
      for (int y = 0; y < taps; ++y) sum += first[y * in.stride + i] * k[y];
      dst[i] = Clip8(sum);
    }
  }
}

// The pixels [y_begin, y_end) x [x_begin, x_end) of TransposePixels, in 16 x 16
// blocks so that both sides stay in cache. A pixel moves as one 4-byte load
// and store: the load's extra byte lies in the next input row, and the store's
// lands on the first byte of output pixel (x, y + 1), which is written after it
// (TransposePixels does the regions in that order). Both exist for every row
// but the last, which moves byte by byte.
void TransposeRegion(ByteRows in, int rows, int y_begin, int y_end, int x_begin, int x_end,
                     uint8_t* out) {
  constexpr int kBlock = 16;
  const size_t out_stride = static_cast<size_t>(rows) * 3;
  for (int y0 = y_begin; y0 < y_end; y0 += kBlock) {
    const int y1 = std::min(y0 + kBlock, y_end);
    for (int x0 = x_begin; x0 < x_end; x0 += kBlock) {
      const int x1 = std::min(x0 + kBlock, x_end);
      for (int y = y0; y < y1; ++y) {
        const uint8_t* src = in.data + y * in.stride + x0 * 3;
        uint8_t* dst = out + (static_cast<size_t>(x0) * rows + y) * 3;
        if (y + 1 < rows) {
          for (int x = x0; x < x1; ++x, src += 3, dst += out_stride) {
            uint32_t pixel;
            std::memcpy(&pixel, src, 4);
            std::memcpy(dst, &pixel, 4);
          }
        } else {
          for (int x = x0; x < x1; ++x, src += 3, dst += out_stride) {
            dst[0] = src[0];
            dst[1] = src[1];
            dst[2] = src[2];
          }
        }
      }
    }
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
// Transposes the 8 x 8 pixels at src (rows `stride` bytes apart) to dst (rows
// `out_stride` bytes apart): each row's 24 bytes are spread to eight 32-bit
// lanes, the lanes transposed as an 8 x 8 matrix of ints, and each column
// packed back to 24 bytes. Reads 4 bytes past each source row's block.
__attribute__((target("avx2"))) void TransposeBlockAvx2(const uint8_t* src, size_t stride,
                                                        uint8_t* dst, size_t out_stride) {
  const __m256i spread = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,
                                          0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
  __m256i r[8];
  for (int i = 0; i < 8; ++i) {
    const uint8_t* p = src + i * stride;
    const __m256i bytes = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 12)), 1);
    r[i] = _mm256_shuffle_epi8(bytes, spread);
  }
  const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  const __m256i columns[8] = {
      _mm256_permute2x128_si256(u0, u4, 0x20), _mm256_permute2x128_si256(u1, u5, 0x20),
      _mm256_permute2x128_si256(u2, u6, 0x20), _mm256_permute2x128_si256(u3, u7, 0x20),
      _mm256_permute2x128_si256(u0, u4, 0x31), _mm256_permute2x128_si256(u1, u5, 0x31),
      _mm256_permute2x128_si256(u2, u6, 0x31), _mm256_permute2x128_si256(u3, u7, 0x31)};
  const __m256i pack = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
                                        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
  const __m256i join = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
  for (int j = 0; j < 8; ++j) {
    const __m256i packed =
        _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(columns[j], pack), join);
    uint8_t* d = dst + j * out_stride;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm256_castsi256_si128(packed));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(d + 16), _mm256_extracti128_si256(packed, 1));
  }
}
#endif

// out (cols rows of `rows` pixels) = the transpose of the rows x cols pixels
// of `in`: with AVX2, 8 x 8 blocks as far as two more pixels follow in the row
// (a block's loads read 4 bytes past it) and whole groups of eight rows go,
// then the rest.
void TransposePixels(ByteRows in, int rows, int cols, uint8_t* out) {
  int block_rows = 0, block_cols = 0;
#if defined(__GNUC__) && defined(__x86_64__)
  if (image_internal::UseAvx2() && cols >= 10 && rows >= 8) {
    block_rows = rows / 8 * 8;
    block_cols = (cols - 2) / 8 * 8;
    const size_t out_stride = static_cast<size_t>(rows) * 3;
    for (int y0 = 0; y0 < block_rows; y0 += 8) {
      for (int x0 = 0; x0 < block_cols; x0 += 8) {
        TransposeBlockAvx2(in.data + y0 * in.stride + x0 * 3, in.stride,
                           out + (static_cast<size_t>(x0) * rows + y0) * 3, out_stride);
      }
    }
  }
#endif
  TransposeRegion(in, rows, 0, block_rows, block_cols, cols, out);
  TransposeRegion(in, rows, block_rows, rows, 0, cols, out);
}

// Scratch memory in a thread_local buffer that the thread's next resize reuses
// (no allocation, page faults or zero-filling per image), unless it grew past
// what a training image needs: a huge image's scratch is given back.
class Scratch {
 public:
  Scratch(std::vector<uint8_t>& buffer, size_t bytes) : buffer_(buffer) {
    if (buffer_.size() < bytes) buffer_.resize(bytes);
  }
  ~Scratch() {
    if (buffer_.size() > kMaxKeptBytes) std::vector<uint8_t>().swap(buffer_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  uint8_t* data() { return buffer_.data(); }

 private:
  static constexpr size_t kMaxKeptBytes = size_t{8} << 20;
  std::vector<uint8_t>& buffer_;
};

// Horizontal pass over `rows` rows of `in_width` pixels into rows x out_width
// pixels. Each output byte is the same integer sum as Pillow's horizontal
// loop; it is computed as a vertical pass over the transposed rows (the
// vertical pass vectorises; a horizontal one over interleaved RGB does not),
// in bands of rows so that the scratch stays small for any image height.
void ResampleHorizontal(ByteRows in, int rows, int in_width, const AxisKernel& kernel,
                        int out_width, uint8_t* out) {
  constexpr int kBand = 64;
  const int band = std::min(rows, kBand);
  thread_local std::vector<uint8_t> transposed_buffer, resampled_buffer;
  Scratch transposed(transposed_buffer, static_cast<size_t>(in_width) * band * 3);
  Scratch resampled(resampled_buffer, static_cast<size_t>(out_width) * band * 3);
  for (int y = 0; y < rows; y += band) {
    const int n = std::min(band, rows - y);
    const size_t column_bytes = static_cast<size_t>(n) * 3;
    TransposePixels({in.data + y * in.stride, in.stride}, n, in_width, transposed.data());
    ResampleVertical({transposed.data(), column_bytes}, column_bytes, 0, kernel, out_width,
                     resampled.data());
    TransposePixels({resampled.data(), column_bytes}, out_width, n,
                    out + static_cast<size_t>(y) * out_width * 3);
  }
}

// Resize of the width x height pixels at `in` (rows `stride` bytes apart) into
// `image`, reusing its buffer.
void ResizeRows(ByteRows in, int in_width, int in_height, int width, int height, Image* image) {
  const bool need_horizontal = width != in_width;
  const bool need_vertical = height != in_height;
  image->width = width;
  image->height = height;
  image->rgb.resize(static_cast<size_t>(width) * height * 3);
  uint8_t* const out = image->rgb.data();
  const size_t in_row_bytes = static_cast<size_t>(in_width) * 3;
  const size_t out_row_bytes = static_cast<size_t>(width) * 3;
  if (!need_horizontal && !need_vertical) {
    for (int y = 0; y < height; ++y) {
      std::copy_n(in.data + y * in.stride, out_row_bytes, out + y * out_row_bytes);
    }
    return;
  }
  const std::shared_ptr<const AxisKernel> vertical_kernel = CachedKernel(in_height, height);
  const AxisKernel& vertical = *vertical_kernel;
  thread_local std::vector<uint8_t> temp_buffer;  // the first pass's output
  // Pillow 13 runs the vertical pass first when the height shrinks by more than
  // twice what the width does (fewer operations); the order changes the
  // intermediate uint8 rounding, so it must be the same here.
  const bool vertical_first =
      height < in_height && (in_height - height) > 2 * (in_width - width);
  if (vertical_first) {
    if (!need_horizontal) {
      ResampleVertical(in, in_row_bytes, 0, vertical, height, out);
      return;
    }
    Scratch temp(temp_buffer, in_row_bytes * height);
    ResampleVertical(in, in_row_bytes, 0, vertical, height, temp.data());
    ResampleHorizontal({temp.data(), in_row_bytes}, height, in_width,
                       *CachedKernel(in_width, width), width, out);
    return;
  }
  // Horizontal first, producing only the rows the vertical pass reads.
  int first_row = 0, rows = in_height;
  if (need_vertical) {
    first_row = vertical.start[0];
    rows = vertical.start[height - 1] + vertical.count[height - 1] - first_row;
  }
  const std::shared_ptr<const AxisKernel> horizontal_kernel = CachedKernel(in_width, width);
  const AxisKernel& horizontal = *horizontal_kernel;
  const ByteRows from_first = {in.data + first_row * in.stride, in.stride};
  if (!need_vertical) {
    ResampleHorizontal(from_first, rows, in_width, horizontal, width, out);
    return;
  }
  Scratch temp(temp_buffer, out_row_bytes * rows);
  ResampleHorizontal(from_first, rows, in_width, horizontal, width, temp.data());
  ResampleVertical({temp.data(), out_row_bytes}, out_row_bytes, first_row, vertical, height, out);
}

}  // namespace

void ResizeRegionInto(const Image& image, int left, int top, int region_width, int region_height,
                      int width, int height, Image* out) {
  CS_CHECK_MSG(width > 0 && height > 0, "Resize to ", width, "x", height);
  CS_CHECK_MSG(left >= 0 && top >= 0 && region_width > 0 && region_height > 0 &&
                   left + region_width <= image.width && top + region_height <= image.height,
               "region ", region_width, "x", region_height, "+", left, "+", top, " of a ",
               image.width, "x", image.height, " image");
  const size_t stride = static_cast<size_t>(image.width) * 3;
  ResizeRows({image.rgb.data() + top * stride + static_cast<size_t>(left) * 3, stride},
             region_width, region_height, width, height, out);
}

Image ResizeRegion(const Image& image, int left, int top, int region_width, int region_height,
                   int width, int height) {
  Image out;
  ResizeRegionInto(image, left, top, region_width, region_height, width, height, &out);
  return out;
}

Image Resize(const Image& image, int width, int height) {
  return ResizeRegion(image, 0, 0, image.width, image.height, width, height);
}

}  // namespace clipscale
