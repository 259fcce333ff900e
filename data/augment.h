// OpenCLIP's training augmentation: torchvision RandomResizedCrop(size,
// scale=(0.9, 1.0), ratio=(3/4, 4/3), bicubic), drawing from a seeded
// generator so that an augmentation is a pure function of (image, seed).
#pragma once

#include <cstdint>

#include "core/random.h"
#include "data/image.h"
#include "data/transforms.h"

namespace clipscale {

struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
};

struct RandomResizedCropOptions {
  double scale_min = 0.9, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
};

// torchvision's RandomResizedCrop.get_params: ten tries at a box of random area
// and aspect ratio, else a centre crop with the ratio clamped.
CropBox RandomResizedCropBox(int width, int height, const RandomResizedCropOptions& options,
                             SplitMix64& rng);

// Crop + bicubic resize to size x size + normalise, CHW floats into `out`.
void TrainTransform(const Image& image, int size, const RandomResizedCropOptions& options,
                    SplitMix64& rng, float* out);

}  // namespace clipscale
