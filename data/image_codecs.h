// Per-format decoders behind DecodeImage (data/image.h), and the CPU switch of
// the pixel loops. Internal to data/.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/image.h"

namespace clipscale::image_internal {

// Each decodes into `image` through SizeImage, so a caller that keeps one Image
// reuses its pixel buffer (see DecodeImageInto). `min_side` > 0 asks for
// libjpeg-turbo's scaled decode (see DecodeImageScaled); 0 decodes at full
// size, Pillow-exact.
absl::Status DecodeJpeg(const std::string& bytes, int min_side, Image* image);
absl::Status DecodePng(const std::string& bytes, Image* image);
absl::Status DecodeWebp(const std::string& bytes, Image* image);

// Sets the size and makes room for its width * height * 3 bytes, keeping the
// buffer's capacity; returns the pixels.
uint8_t* SizeImage(Image* image, int width, int height);

// InvalidArgument unless 0 < width, height and width * height <= kMaxImagePixels.
absl::Status CheckImageSize(const char* format, int64_t width, int64_t height);

// Whether the pixel loops (resize passes, transposes, normalisation) may use
// AVX2, and AVX2 with FMA: the CPU has them and the environment variable
// CLIPSCALE_SIMD is not "off". Off runs the portable loops that CPUs without
// them (and other architectures) run; a test entry runs the transforms so.
// Read once per process.
bool UseAvx2();
bool UseAvx2Fma();

}  // namespace clipscale::image_internal
