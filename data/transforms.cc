// torchvision's geometry rules (Resize with an int, CenterCrop) and ToTensor +
// Normalize, for the RGB images of data/image.h.
#include "data/transforms.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

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
  for (size_t i = 0; i < plane; ++i, rgb += 3) {
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
