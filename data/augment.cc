#include "data/augment.h"

#include <algorithm>
#include <cmath>

namespace clipscale {

CropBox RandomResizedCropBox(int width, int height, const RandomResizedCropOptions& o,
                             SplitMix64& rng) {
  const double area = static_cast<double>(width) * height;
  const double log_lo = std::log(o.ratio_min), log_hi = std::log(o.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.Uniform(o.scale_min, o.scale_max);
    const double aspect = std::exp(rng.Uniform(log_lo, log_hi));
    const int w = static_cast<int>(std::lround(std::sqrt(target * aspect)));
    const int h = static_cast<int>(std::lround(std::sqrt(target / aspect)));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const int top = static_cast<int>(rng.Below(height - h + 1));
      const int left = static_cast<int>(rng.Below(width - w + 1));
      return {top, left, h, w};
    }
  }
  // Fallback: the largest centred box with the ratio clamped into range.
  const double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < o.ratio_min) {
    h = static_cast<int>(std::lround(w / o.ratio_min));
  } else if (in_ratio > o.ratio_max) {
    w = static_cast<int>(std::lround(h * o.ratio_max));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

void TrainTransform(const Image& image, int size, const RandomResizedCropOptions& options,
                    SplitMix64& rng, float* out) {
  const CropBox box = RandomResizedCropBox(image.width, image.height, options, rng);
  // The resized crop goes to a buffer the thread keeps: a fresh 150 KB one per
  // sample would be page-faulted in every time (glibc unmaps such blocks on free).
  thread_local Image resized;
  ResizeRegionInto(image, box.left, box.top, box.width, box.height, size, size, &resized);
  NormalizeToCHW(resized, out);
}

}  // namespace clipscale
