// Per-format decoders behind DecodeImage (data/image.h). Internal to data/.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/image.h"

namespace clipscale::image_internal {

// `min_side` > 0 asks for libjpeg-turbo's scaled decode (see DecodeImageScaled);
// 0 decodes at full size, Pillow-exact.
absl::StatusOr<Image> DecodeJpeg(const std::string& bytes, int min_side);
absl::StatusOr<Image> DecodePng(const std::string& bytes);
absl::StatusOr<Image> DecodeWebp(const std::string& bytes);

// InvalidArgument unless 0 < width, height and width * height <= kMaxImagePixels.
absl::Status CheckImageSize(const char* format, int64_t width, int64_t height);

}  // namespace clipscale::image_internal
