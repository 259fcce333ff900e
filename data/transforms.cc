// torchvision's geometry rules (Resize with an int, CenterCrop) and ToTensor +
// Normalize, for the RGB images of data/image.h.
#include "data/transforms.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/status.h"
#include "data/image_codecs.h"

namespace clipscale {
namespace {

// Python's round(d / 2.0) for an integer d >= 0 (round half to even).
int HalfRoundedEven(int d) {
  int k = d / 2;
  return (d % 2 == 0 || k % 2 == 0) ? k : k + 1;
}

// Copies the window [left, left + width) x [top, top + height) of `image`; parts
// outside the image (negative left/top, or past the edge) are zero, which is
// torchvision's pad(fill=0) followed by crop.
Image Window(const Image& image, int left, int top, int width, int height) {
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.assign(static_cast<size_t>(width) * height * 3, 0);
  const int x0 = std::max(left, 0), x1 = std::min(left + width, image.width);
  if (x1 <= x0) return out;
  for (int y = std::max(top, 0); y < std::min(top + height, image.height); ++y) {
    std::memcpy(&out.rgb[(static_cast<size_t>(y - top) * width + (x0 - left)) * 3],
                &image.rgb[(static_cast<size_t>(y) * image.width + x0) * 3],
                static_cast<size_t>(x1 - x0) * 3);
  }
  return out;
}

// The crop offset on one axis, in the coordinates of the unpadded image.
int CropStart(int image_size, int crop_size) {
  if (crop_size > image_size) return -((crop_size - image_size) / 2);  // left/top padding
  return HalfRoundedEven(image_size - crop_size);
}

#if defined(__GNUC__) && defined(__x86_64__)
// For channel c of eight RGB pixels (24 bytes): bytes c, c + 3, ..., c + 21,
// from the first 16 and from the last 8 (-1 leaves a byte zero).
alignas(16) constexpr int8_t kLowBytes[3][16] = {
    {0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    {1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    {2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}};
alignas(16) constexpr int8_t kHighBytes[3][16] = {
    {-1, -1, -1, -1, -1, -1, 2, 5, -1, -1, -1, -1, -1, -1, -1, -1},
    {-1, -1, -1, -1, -1, 0, 3, 6, -1, -1, -1, -1, -1, -1, -1, -1},
    {-1, -1, -1, -1, -1, 1, 4, 7, -1, -1, -1, -1, -1, -1, -1, -1}};

// The channels of the eight RGB pixels at rgb (24 bytes), each as eight
// 32-bit lanes.
__attribute__((target("avx2"))) inline void SplitChannels(const uint8_t* rgb,
                                                          __m256i channels[3]) {
  const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rgb));
  const __m128i high = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rgb + 16));
  for (int c = 0; c < 3; ++c) {
    const __m128i low_shuffle = _mm_load_si128(reinterpret_cast<const __m128i*>(kLowBytes[c]));
    const __m128i high_shuffle = _mm_load_si128(reinterpret_cast<const __m128i*>(kHighBytes[c]));
    channels[c] = _mm256_cvtepu8_epi32(
        _mm_or_si128(_mm_shuffle_epi8(low, low_shuffle), _mm_shuffle_epi8(high, high_shuffle)));
  }
}

// Pixels [0, plane - plane % 8) of NormalizeToCHW, eight at a time: each
// channel's eight table entries fetched with one gather (the same table
// values, so the same bits). Returns how many pixels it did.
__attribute__((target("avx2"))) size_t NormalizeGatherAvx2(const uint8_t* rgb, size_t plane,
                                                           const float (*table)[256], float* out) {
  size_t i = 0;
  for (; i + 8 <= plane; i += 8, rgb += 24) {
    __m256i channels[3];
    SplitChannels(rgb, channels);
    for (int c = 0; c < 3; ++c) {
      _mm256_storeu_ps(out + c * plane + i, _mm256_i32gather_ps(table[c], channels[c], 4));
    }
  }
  return i;
}

// The same pixels computed instead of looked up (gathers are slow: this takes
// half the time): v / 255 and then (q - mean) / std, each division as a
// product with the reciprocal corrected by one fused multiply-add residual
// (Markstein's iteration). That is the correctly rounded quotient for most
// divisors, not for all, so NormalizeToCHW uses it only after checking it
// against the table on all 256 values of each channel.
__attribute__((target("avx2,fma"))) size_t NormalizeArithmeticAvx2(const uint8_t* rgb,
                                                                   size_t plane,
                                                                   const ImageNormalization& norm,
                                                                   float* out) {
  __m256 mean[3], std_dev[3], inverse_std[3];
  for (int c = 0; c < 3; ++c) {
    mean[c] = _mm256_set1_ps(norm.mean[c]);
    std_dev[c] = _mm256_set1_ps(norm.std[c]);
    inverse_std[c] = _mm256_set1_ps(1.0f / norm.std[c]);
  }
  const __m256 max_value = _mm256_set1_ps(255.0f), inverse_max = _mm256_set1_ps(1.0f / 255.0f);
  size_t i = 0;
  for (; i + 8 <= plane; i += 8, rgb += 24) {
    __m256i channels[3];
    SplitChannels(rgb, channels);
    for (int c = 0; c < 3; ++c) {
      const __m256 v = _mm256_cvtepi32_ps(channels[c]);
      __m256 scaled = _mm256_mul_ps(v, inverse_max);
      scaled = _mm256_fmadd_ps(_mm256_fnmadd_ps(scaled, max_value, v), inverse_max, scaled);
      const __m256 centred = _mm256_sub_ps(scaled, mean[c]);
      __m256 y = _mm256_mul_ps(centred, inverse_std[c]);
      y = _mm256_fmadd_ps(_mm256_fnmadd_ps(y, std_dev[c], centred), inverse_std[c], y);
      _mm256_storeu_ps(out + c * plane + i, y);
    }
  }
  return i;
}
#endif

// torch's (v / 255 - mean) / std for every v and channel, and how the SIMD
// part of NormalizeToCHW may compute it; made once per normalisation and
// thread (NormalizeToCHW runs per image).
struct NormalizeTable {
  ImageNormalization norm;
  float value[3][256];
  enum class Simd { kNone, kGather, kArithmetic } simd = Simd::kNone;
};

bool SameNormalization(const ImageNormalization& a, const ImageNormalization& b) {
  return std::memcmp(a.mean.data(), b.mean.data(), sizeof(float) * 3) == 0 &&
         std::memcmp(a.std.data(), b.std.data(), sizeof(float) * 3) == 0;
}

const NormalizeTable& TableFor(const ImageNormalization& norm) {
  thread_local NormalizeTable table;
  thread_local bool filled = false;
  if (filled && SameNormalization(table.norm, norm)) return table;
  table.norm = norm;
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      float scaled = static_cast<float>(v) / 255.0f;
      table.value[c][v] = (scaled - norm.mean[c]) / norm.std[c];
    }
  }
  table.simd = NormalizeTable::Simd::kNone;
#if defined(__GNUC__) && defined(__x86_64__)
  if (image_internal::UseAvx2()) table.simd = NormalizeTable::Simd::kGather;
  if (image_internal::UseAvx2Fma()) {
    // Every value of every channel through the arithmetic: 256 grey pixels.
    uint8_t grey[256 * 3];
    for (int v = 0; v < 256; ++v) {
      grey[v * 3] = grey[v * 3 + 1] = grey[v * 3 + 2] = static_cast<uint8_t>(v);
    }
    float computed[3 * 256];
    NormalizeArithmeticAvx2(grey, 256, norm, computed);
    if (std::memcmp(computed, table.value, sizeof computed) == 0) {
      table.simd = NormalizeTable::Simd::kArithmetic;
    }
  }
#endif
  filled = true;
  return table;
}

}  // namespace

Image ResizeShortestSide(const Image& image, int size) {
  CS_CHECK_MSG(size > 0, "ResizeShortestSide to ", size);
  const bool portrait = image.width <= image.height;
  const int64_t short_side = portrait ? image.width : image.height;
  const int64_t long_side = portrait ? image.height : image.width;
  // int(size * long / short): exact product, one correctly rounded division, truncation.
  const int new_long =
      static_cast<int>(static_cast<double>(size * long_side) / static_cast<double>(short_side));
  const int new_width = portrait ? size : new_long;
  const int new_height = portrait ? new_long : size;
  if (new_width == image.width && new_height == image.height) return image;
  return Resize(image, new_width, new_height);
}

Image CenterCrop(const Image& image, int width, int height) {
  CS_CHECK_MSG(width > 0 && height > 0, "CenterCrop to ", width, "x", height);
  if (width == image.width && height == image.height) return image;
  return Window(image, CropStart(image.width, width), CropStart(image.height, height), width,
                height);
}

void NormalizeToCHW(const Image& image, float* out, const ImageNormalization& norm) {
  // ToTensor divides in float32, Normalize subtracts then divides in float32;
  // a 256-entry table per channel reproduces that bit for bit, and so does the
  // SIMD arithmetic where TableFor found that it does.
  const NormalizeTable& table = TableFor(norm);
  const size_t plane = static_cast<size_t>(image.width) * image.height;
  const uint8_t* rgb = image.rgb.data();
  size_t i = 0;
#if defined(__GNUC__) && defined(__x86_64__)
  if (table.simd == NormalizeTable::Simd::kArithmetic) {
    i = NormalizeArithmeticAvx2(rgb, plane, norm, out);
  } else if (table.simd == NormalizeTable::Simd::kGather) {
    i = NormalizeGatherAvx2(rgb, plane, table.value, out);
  }
  rgb += 3 * i;
#endif
  for (; i < plane; ++i, rgb += 3) {
    out[i] = table.value[0][rgb[0]];
    out[plane + i] = table.value[1][rgb[1]];
    out[2 * plane + i] = table.value[2][rgb[2]];
  }
}

void EvalTransform(const Image& image, int image_size, float* out, const ImageNormalization& norm) {
  NormalizeToCHW(CenterCrop(ResizeShortestSide(image, image_size), image_size), out, norm);
}

std::vector<float> EvalTransform(const Image& image, int image_size,
                                 const ImageNormalization& norm) {
  std::vector<float> out(3 * static_cast<size_t>(image_size) * image_size);
  EvalTransform(image, image_size, out.data(), norm);
  return out;
}

}  // namespace clipscale
