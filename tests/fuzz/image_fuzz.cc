// Image bytes from a shard: JPEG, PNG and WebP decoding (full size and scaled)
// either fails with a Status or returns a consistent RGB image within the
// pixel cap; the first input byte picks the scaled decode's min_side.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void CheckImage(const absl::StatusOr<clipscale::Image>& image) {
  if (!image.ok()) {
    const absl::StatusCode code = image.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kDataLoss ||
               code == absl::StatusCode::kResourceExhausted);  // over kMaxImagePixels
    return;
  }
  FUZZ_CHECK(image->width > 0 && image->height > 0);
  const int64_t pixels = int64_t{image->width} * image->height;
  FUZZ_CHECK(pixels <= clipscale::kMaxImagePixels);
  FUZZ_CHECK(image->rgb.size() == static_cast<size_t>(pixels) * 3);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int min_side = data[0];
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const absl::StatusOr<clipscale::Image> full = clipscale::DecodeImage(bytes);
  CheckImage(full);
  const absl::StatusOr<clipscale::Image> scaled = clipscale::DecodeImageScaled(bytes, min_side);
  CheckImage(scaled);
  // Both read the same header: they agree on whether the file is an image.
  FUZZ_CHECK(full.ok() == scaled.ok() || clipscale::SniffImageFormat(bytes) ==
                                             clipscale::ImageFormat::kJpeg);
  return 0;
}
