// OpenCLIP's image preprocessing on decoded RGB images, bit-exact with what
// torchvision does to a PIL image: Pillow's bicubic resampling, torchvision's
// resize/crop geometry, ToTensor + Normalize in float32. Torch-free: output is
// written to caller memory (e.g. a pinned batch buffer).
#pragma once

#include <array>
#include <vector>

#include "data/image.h"

namespace clipscale {

// Per-channel mean/std applied after scaling to [0, 1].
struct ImageNormalization {
  std::array<float, 3> mean;
  std::array<float, 3> std;
};

// open_clip's OPENAI_DATASET_MEAN / OPENAI_DATASET_STD (the default).
inline constexpr ImageNormalization kOpenAiNormalization = {
    {0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}};

// Pillow's Image.resize(size, BICUBIC) for RGB: two separable passes (in
// Pillow 13's order: vertical first only when the height shrinks by more than
// twice what the width does), antialiased when shrinking (support scaled by the
// factor), 22-bit fixed-point coefficients, uint8 rounding and clipping after
// each pass. Identical to PIL's uint8 output. width, height > 0.
Image Resize(const Image& image, int width, int height);

// Resize of the region_width x region_height box at (left, top), which must lie
// inside the image: the same bytes as Resize of a copy of that box (the filter
// stops at the box's edges, as torchvision's crop-then-resize does), without
// the copy.
Image ResizeRegion(const Image& image, int left, int top, int region_width, int region_height,
                   int width, int height);
// The same into `out`, reusing its buffer (`out` must not be `image`).
void ResizeRegionInto(const Image& image, int left, int top, int region_width, int region_height,
                      int width, int height, Image* out);

// torchvision Resize(size) on a PIL image: the shorter side becomes `size`, the
// longer one int(size * long / short); returned unchanged if already that size.
Image ResizeShortestSide(const Image& image, int size);

// torchvision CenterCrop: pads with zeros (left/top get the smaller half) when
// the image is smaller than the crop, then crops at round((H - h) / 2) with
// Python's round-half-to-even.
Image CenterCrop(const Image& image, int width, int height);
inline Image CenterCrop(const Image& image, int size) { return CenterCrop(image, size, size); }

// ToTensor + Normalize: writes 3 * width * height floats, CHW, each computed
// in float32 as (v / 255 - mean) / std, exactly as torch does.
void NormalizeToCHW(const Image& image, float* out,
                    const ImageNormalization& norm = kOpenAiNormalization);

// open_clip.image_transform(image_size, is_train=False) with its defaults
// (resize_mode "shortest", bicubic, OpenAI mean/std) applied to the RGB image:
// 3 * image_size * image_size floats, CHW.
void EvalTransform(const Image& image, int image_size, float* out,
                   const ImageNormalization& norm = kOpenAiNormalization);
std::vector<float> EvalTransform(const Image& image, int image_size,
                                 const ImageNormalization& norm = kOpenAiNormalization);

}  // namespace clipscale
