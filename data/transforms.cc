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
// Pixels [0, plane - plane % 8) of NormalizeToCHW, eight at a time: the 24
// bytes are split into their channels and each channel's eight table entries
// fetched with one gather (the same table values, so the same bits). Returns
// how many pixels it did.
__attribute__((target("avx2"))) size_t NormalizeAvx2(const uint8_t* rgb, size_t plane,
                                                     const float (*table)[256], float* out) {
  // For channel c, bytes c, c + 3, ..., c + 21 of the 24: from the first 16 and
  // from the last 8 (-1 leaves a byte zero).
  alignas(16) static const int8_t kLow[3][16] = {
      {0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
      {1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
      {2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}};
  alignas(16) static const int8_t kHigh[3][16] = {
      {-1, -1, -1, -1, -1, -1, 2, 5, -1, -1, -1, -1, -1, -1, -1, -1},
      {-1, -1, -1, -1, -1, 0, 3, 6, -1, -1, -1, -1, -1, -1, -1, -1},
      {-1, -1, -1, -1, -1, 1, 4, 7, -1, -1, -1, -1, -1, -1, -1, -1}};
  __m128i low_shuffle[3], high_shuffle[3];
  for (int c = 0; c < 3; ++c) {
    low_shuffle[c] = _mm_load_si128(reinterpret_cast<const __m128i*>(kLow[c]));
    high_shuffle[c] = _mm_load_si128(reinterpret_cast<const __m128i*>(kHigh[c]));
  }
  size_t i = 0;
  for (; i + 8 <= plane; i += 8, rgb += 24) {
    const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rgb));
    const __m128i high = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rgb + 16));
    for (int c = 0; c < 3; ++c) {
      const __m128i bytes = _mm_or_si128(_mm_shuffle_epi8(low, low_shuffle[c]),
                                         _mm_shuffle_epi8(high, high_shuffle[c]));
      const __m256 values = _mm256_i32gather_ps(table[c], _mm256_cvtepu8_epi32(bytes), 4);
      _mm256_storeu_ps(out + c * plane + i, values);
    }
  }
  return i;
}
#endif

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
  // a 256-entry table per channel reproduces that bit for bit.
  float table[3][256];
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      float scaled = static_cast<float>(v) / 255.0f;
      table[c][v] = (scaled - norm.mean[c]) / norm.std[c];
    }
  }
  const size_t plane = static_cast<size_t>(image.width) * image.height;
  const uint8_t* rgb = image.rgb.data();
  size_t i = 0;
#if defined(__GNUC__) && defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) {
    i = NormalizeAvx2(rgb, plane, table, out);
    rgb += 3 * i;
  }
#endif
  for (; i < plane; ++i, rgb += 3) {
    out[i] = table[0][rgb[0]];
    out[plane + i] = table[1][rgb[1]];
    out[2 * plane + i] = table[2][rgb[2]];
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
