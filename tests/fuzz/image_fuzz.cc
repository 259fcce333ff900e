// Image bytes from a shard: JPEG, PNG and WebP decoding (full size and scaled)
// either fails with a Status or returns a consistent RGB image within the
// pixel cap; the first input byte picks the scaled decode's min_side.
#include <webp/decode.h>

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

// The size a header claims, or -1 when the codec's own header reader cannot tell.
int64_t ClaimedPixels(const std::string& bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  int width = 0, height = 0;  // WebP
  switch (clipscale::SniffImageFormat(bytes)) {
    case clipscale::ImageFormat::kPng: {
      if (bytes.size() < 24) return -1;
      const uint64_t w = (uint64_t{p[16]} << 24) | (p[17] << 16) | (p[18] << 8) | p[19];
      const uint64_t h = (uint64_t{p[20]} << 24) | (p[21] << 16) | (p[22] << 8) | p[23];
      return w >> 31 || h >> 31 ? INT64_MAX : static_cast<int64_t>(w * h);  // PNG: < 2^31 each
    }
    case clipscale::ImageFormat::kWebp:
      if (!WebPGetInfo(p, bytes.size(), &width, &height)) return -1;
      return int64_t{width} * height;
    case clipscale::ImageFormat::kJpeg:
      // The first frame header (SOFn), found by walking the segments as our
      // decoder's fallback does when TurboJPEG cannot read the header.
      for (size_t i = 2; i + 9 <= bytes.size();) {
        if (p[i] != 0xFF || p[i + 1] == 0xFF) {
          ++i;  // junk or fill bytes between segments
          continue;
        }
        const int marker = p[i + 1];
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
          i += 2;  // TEM, RSTn, SOI: no length field
          continue;
        }
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
            marker != 0xCC) {
          return int64_t{(p[i + 5] << 8) | p[i + 6]} * ((p[i + 7] << 8) | p[i + 8]);
        }
        i += 2 + ((p[i + 2] << 8) | p[i + 3]);
      }
      return -1;
    case clipscale::ImageFormat::kUnknown:
      break;
  }
  return -1;
}

// Decoding a legal but large image (up to kMaxImagePixels, 537 MB of RGB) under
// ASan takes seconds to minutes, and above a megapixel finds nothing a small one
// does not: libFuzzer would call it a hang. Such inputs are
// skipped; those claiming more than the cap are not (refusing is cheap, and must happen).
constexpr int64_t kSlowPixels = int64_t{1} << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int min_side = data[0];
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const int64_t claimed = ClaimedPixels(bytes);
  if (claimed > kSlowPixels && claimed <= clipscale::kMaxImagePixels) return 0;
  const absl::StatusOr<clipscale::Image> full = clipscale::DecodeImage(bytes);
  CheckImage(full);
  FUZZ_CHECK(claimed <= clipscale::kMaxImagePixels || !full.ok());
  const absl::StatusOr<clipscale::Image> scaled = clipscale::DecodeImageScaled(bytes, min_side);
  CheckImage(scaled);
  // Both read the same header: they agree on whether the file is an image.
  FUZZ_CHECK(full.ok() == scaled.ok() ||
             clipscale::SniffImageFormat(bytes) == clipscale::ImageFormat::kJpeg);
  return 0;
}
