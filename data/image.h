// Decoding JPEG, PNG and WebP bytes into 8-bit RGB, the way open_clip's data
// pipeline sees them: Pillow's `Image.open(f).convert("RGB")` (what
// webdataset's "pilrgb" decoder does before the transform runs).
//
// Torch-free on purpose: the data loader decodes on worker threads and must not
// pull LibTorch into this library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

// Interleaved RGB, row-major, no row padding: pixel (x, y) channel c is
// rgb[(y * width + x) * 3 + c].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;
};

enum class ImageFormat { kUnknown, kJpeg, kPng, kWebp };

// Recognises the format from its magic bytes (file names are not trusted).
ImageFormat SniffImageFormat(const std::string& bytes);

// Pillow refuses images above twice its MAX_IMAGE_PIXELS (DecompressionBombError);
// we refuse the same ones before allocating anything.
inline constexpr int64_t kMaxImagePixels = 2 * int64_t{89478485};

// Decodes to RGB with Pillow's conversions: grey is replicated, alpha is dropped
// (not composited), palettes are expanded, 16-bit samples keep their high byte
// except 16-bit grey, which Pillow clips to 255 (its I;16 -> RGB rule). JPEG uses
// libjpeg-turbo's defaults (ISLOW IDCT, fancy upsampling), CMYK/YCCK JPEGs go
// through Pillow's Adobe-inverted CMYK -> RGB formula. EXIF orientation and ICC
// profiles are ignored, as open_clip's transform ignores them.
// Errors: InvalidArgument for empty, unrecognised or malformed headers and
// unsupported variants (e.g. animated WebP); ResourceExhausted above
// kMaxImagePixels (checked from the header, before decoding); DataLoss for
// truncated or corrupt pixel data. Never aborts on bad input.
absl::StatusOr<Image> DecodeImage(const std::string& bytes);

// Reads a whole file and decodes it; the path is named in any error.
absl::StatusOr<Image> ReadImageFile(const std::string& path);

// Fast path for training data, NOT what open_clip's transform sees: JPEGs are
// decoded at 1/8, 1/4 or 1/2 scale (libjpeg-turbo's DCT-domain scaling, which
// skips most of the IDCT and upsampling work on large photos) when the shorter
// side stays >= min_side; exactly Pillow's Image.draft("RGB", (min_side,
// min_side)) followed by convert("RGB"). Other formats, small JPEGs and
// min_side <= 0 decode at full size, as DecodeImage.
absl::StatusOr<Image> DecodeImageScaled(const std::string& bytes, int min_side);

// DecodeImageScaled (DecodeImage when min_side <= 0) into `image`, whose pixel
// buffer is reused: a decode thread that keeps one Image allocates nothing per
// sample (a fresh 200 KB buffer per image costs a 256-px JPEG's decode a fifth
// more in page faults, as glibc returns such blocks to the kernel on free).
// On error `image` holds no valid picture.
absl::Status DecodeImageInto(const std::string& bytes, int min_side, Image* image);

}  // namespace clipscale
