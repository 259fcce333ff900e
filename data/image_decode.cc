// Format sniffing, WebP, and the public entry points of data/image.h.
#include <webp/decode.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "data/image.h"
#include "data/image_codecs.h"

namespace clipscale {
namespace image_internal {

absl::Status CheckImageSize(const char* format, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(format, ": invalid image size ", width, "x", height));
  }
  if (width * height > kMaxImagePixels) {
    return absl::ResourceExhaustedError(absl::StrCat(format, ": image of ", width, "x", height,
                                                   " pixels exceeds the limit of ", kMaxImagePixels,
                                                   " pixels (decompression bomb)"));
  }
  return absl::OkStatus();
}

namespace {

bool SimdAllowed() {
  const char* setting = std::getenv("CLIPSCALE_SIMD");
  return setting == nullptr || std::strcmp(setting, "off") != 0;
}

}  // namespace

#if defined(__GNUC__) && defined(__x86_64__)
bool UseAvx2() {
  static const bool use = SimdAllowed() && __builtin_cpu_supports("avx2");
  return use;
}
bool UseAvx2Fma() {
  static const bool use = UseAvx2() && __builtin_cpu_supports("fma");
  return use;
}
#else
bool UseAvx2() { return false; }
bool UseAvx2Fma() { return false; }
#endif

uint8_t* SizeImage(Image* image, int width, int height) {
  image->width = width;
  image->height = height;
  image->rgb.resize(static_cast<size_t>(width) * height * 3);
  return image->rgb.data();
}

// Pillow opens WebP through WebPAnimDecoder and converts RGBA to RGB by dropping
// alpha; for a still image that is libwebp's plain RGB decode (alpha is a
// separate plane, never premultiplied into RGB in this mode).
absl::Status DecodeWebp(const std::string& bytes, Image* image) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures features;
  VP8StatusCode code = WebPGetFeatures(data, bytes.size(), &features);
  if (code == VP8_STATUS_NOT_ENOUGH_DATA) return absl::DataLossError("WebP: file is truncated");
  if (code != VP8_STATUS_OK) {
    return absl::InvalidArgumentError(absl::StrCat("WebP: invalid header (status ", code, ")"));
  }
  if (features.has_animation) {
    return absl::InvalidArgumentError("WebP: animated images are not supported");
  }
  RETURN_IF_ERROR(CheckImageSize("WebP", features.width, features.height));
  uint8_t* rgb = SizeImage(image, features.width, features.height);
  if (WebPDecodeRGBInto(data, bytes.size(), rgb, image->rgb.size(), image->width * 3) == nullptr) {
    return absl::DataLossError("WebP: corrupt or truncated image data");
  }
  return absl::OkStatus();
}

}  // namespace image_internal

ImageFormat SniffImageFormat(const std::string& bytes) {
  auto starts_with = [&](const char* magic, size_t offset, size_t length) {
    return bytes.size() >= offset + length &&
           std::memcmp(bytes.data() + offset, magic, length) == 0;
  };
  if (starts_with("\xFF\xD8\xFF", 0, 3)) return ImageFormat::kJpeg;
  if (starts_with("\x89PNG\r\n\x1A\n", 0, 8)) return ImageFormat::kPng;
  if (starts_with("RIFF", 0, 4) && starts_with("WEBP", 8, 4)) return ImageFormat::kWebp;
  return ImageFormat::kUnknown;
}

namespace {

absl::StatusOr<Image> Decoded(const std::string& bytes, int min_side) {
  Image image;
  RETURN_IF_ERROR(DecodeImageInto(bytes, min_side, &image));
  return image;
}

}  // namespace

absl::Status DecodeImageInto(const std::string& bytes, int min_side, Image* image) {
  if (bytes.empty()) return absl::InvalidArgumentError("empty image data");
  min_side = std::max(min_side, 0);
  switch (SniffImageFormat(bytes)) {
    case ImageFormat::kJpeg:
      return image_internal::DecodeJpeg(bytes, min_side, image);
    case ImageFormat::kPng:
      return image_internal::DecodePng(bytes, image);
    case ImageFormat::kWebp:
      return image_internal::DecodeWebp(bytes, image);
    case ImageFormat::kUnknown:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unrecognised image format (", bytes.size(),
                                                 " bytes; JPEG, PNG and WebP are supported)"));
}

absl::StatusOr<Image> DecodeImage(const std::string& bytes) { return Decoded(bytes, 0); }

absl::StatusOr<Image> DecodeImageScaled(const std::string& bytes, int min_side) {
  return Decoded(bytes, min_side);
}

absl::StatusOr<Image> ReadImageFile(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(path, ": ", std::string(std::strerror(errno))));
  }
  std::string bytes;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) bytes.append(buffer, n);
  if (std::ferror(file.get())) return absl::DataLossError(absl::StrCat(path, ": read error"));
  absl::StatusOr<Image> image = DecodeImage(bytes);
  if (!image.ok()) return Annotate(image.status(), path);
  return image;
}

}  // namespace clipscale
