// JPEG through the TurboJPEG API: it reports errors as return codes instead of
// libjpeg's default exit(), and its defaults (ISLOW IDCT, fancy upsampling) are
// the libjpeg defaults Pillow decodes with.
#include <turbojpeg.h>

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "data/image.h"
#include "data/image_codecs.h"

namespace clipscale::image_internal {
namespace {

struct TjDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};

// One decompressor per thread, reused: creating one per image costs a libjpeg
// init, and handles must not be shared between threads. TurboJPEG 2.1 leaves a
// handle mid-stream after tjDecompressHeader3 fails (it skips
// jpeg_abort_decompress on that path), which breaks every later image, so a
// handle that reported anything is replaced.
class ThreadDecompressor {
 public:
  static tjhandle Get() {
    if (!Slot()) Slot().reset(tjInitDecompress());
    return Slot().get();
  }
  static void Discard() { Slot().reset(); }

 private:
  static std::unique_ptr<void, TjDeleter>& Slot() {
    thread_local std::unique_ptr<void, TjDeleter> handle;
    return handle;
  }
};

// libjpeg reports a truncated stream as a warning (it pads the image with grey);
// Pillow refuses such files ("image file is truncated"), so we do too. Other
// warnings ("extraneous bytes before marker", "bad Huffman code") are accepted,
// as Pillow accepts them. TurboJPEG keeps the text of the first warning only.
bool IsTruncationWarning(const std::string& message) {
  return message.find("Premature end of JPEG file") != std::string::npos;
}

// True when the data ends before the end-of-image marker that must follow the
// last scan. libjpeg then asks for bytes past the end, which Pillow reports as
// "image file is truncated". We check it ourselves because TurboJPEG keeps only
// its first warning's text: after a harmless first warning ("extraneous bytes")
// the truncation went unseen and the missing pixels came back grey. Neither
// 0xFFDA nor 0xFFD9 can occur inside entropy-coded data (0xFF is stuffed), so
// the last SOS found is the last scan's. Asked the other way round — is there
// an SOS after the last EOI (or anywhere, without one)? — both searches stop
// near where they start in a whole file: a backward search for the last SOS
// would walk back over the whole entropy-coded scan (0.2 ms for a 190 KB file,
// an eighth of its decode).
bool EndsBeforeEoi(const std::string& bytes) {
  const size_t eoi = bytes.rfind("\xFF\xD9");
  return bytes.find("\xFF\xDA", eoi == std::string::npos ? 0 : eoi + 2) != std::string::npos;
}

struct JpegHeader {
  int width = 0;
  int height = 0;
  int components = 0;  // 1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK
};

// Reads the frame header (SOFn) ourselves. Only needed when TurboJPEG 2.1's
// tjDecompressHeader3 fails on a file libjpeg itself (and so Pillow) decodes:
// an unusual chroma sampling layout, or a warning raised inside the header.
bool ScanFrameHeader(const std::string& bytes, JpegHeader* header) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t size = bytes.size(), i = 2;
  while (i + 4 <= size) {
    // Junk between segments and 0xFF fill bytes are skipped, as libjpeg does.
    if (p[i] != 0xFF || p[i + 1] == 0xFF) {
      ++i;
      continue;
    }
    unsigned marker = p[i + 1];
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
      i += 2;
      continue;
    }
    size_t length = (p[i + 2] << 8) | p[i + 3];
    bool is_sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_sof) {
      if (length < 8 || i + 10 > size) return false;
      header->height = (p[i + 5] << 8) | p[i + 6];
      header->width = (p[i + 7] << 8) | p[i + 8];
      header->components = p[i + 9];
      return true;
    }
    i += 2 + length;
  }
  return false;
}

absl::StatusOr<JpegHeader> ReadHeader(const std::string& bytes) {
  tjhandle tj = ThreadDecompressor::Get();
  if (tj == nullptr) return absl::InternalError("JPEG: tjInitDecompress failed");
  JpegHeader header;
  int subsamp = 0, colorspace = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  // TurboJPEG 2.1 returns success without filling in anything when the data
  // ends inside the header (libjpeg pads it with an end marker).
  if (tjDecompressHeader3(tj, data, bytes.size(), &header.width, &header.height, &subsamp,
                          &colorspace) == 0 &&
      header.width > 0 && header.height > 0) {
    header.components = colorspace == TJCS_GRAY                                ? 1
                        : (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) ? 4
                                                                               : 3;
    return header;
  }
  const std::string message = tjGetErrorStr2(tj);
  ThreadDecompressor::Discard();
  // A warning in the header (e.g. junk before a marker) or a chroma layout
  // TurboJPEG 2.1 cannot name: the frame header still tells us what we need.
  const int c = ScanFrameHeader(bytes, &header) ? header.components : 0;
  if ((c == 1 || c == 3 || c == 4) && (message.find("subsampling type") != std::string::npos ||
                                       message.find("Corrupt JPEG data") != std::string::npos)) {
    return header;
  }
  if (IsTruncationWarning(message)) {
    return absl::DataLossError(absl::StrCat("JPEG: file is truncated in its header: ", message));
  }
  return absl::InvalidArgumentError(absl::StrCat("JPEG: invalid header: ", message));
}

// Pillow reads 4-component JPEGs as Adobe-inverted CMYK ("CMYK;I") and converts
// with cmyk2rgb: nk = 255 - k; out = nk - (c * nk) / 255 with its rounding.
void InvertedCmykToRgb(const uint8_t* cmyk, size_t pixels, uint8_t* rgb) {
  for (size_t i = 0; i < pixels; ++i, cmyk += 4, rgb += 3) {
    int nk = cmyk[3];  // 255 - (255 - stored k)
    for (int c = 0; c < 3; ++c) {
      int tmp = (255 - cmyk[c]) * nk + 128;
      int v = nk - (((tmp >> 8) + tmp) >> 8);
      rgb[c] = static_cast<uint8_t>(v < 0 ? 0 : v);
    }
  }
}

// Pillow's JpegImageFile.draft(mode, (min_side, min_side)) rule: the largest of
// 1/8, 1/4, 1/2 with floor(side / min_side) >= denominator on both axes, so
// the shorter side stays >= min_side. libjpeg then decodes ceil(side / denom).
tjscalingfactor PickScale(const JpegHeader& header, int min_side) {
  if (min_side <= 0) return {1, 1};
  const int scale = std::min(header.width / min_side, header.height / min_side);
  for (int denom : {8, 4, 2}) {
    if (scale >= denom) return {1, denom};
  }
  return {1, 1};
}

}  // namespace

absl::Status DecodeJpeg(const std::string& bytes, int min_side, Image* image) {
  ASSIGN_OR_RETURN(JpegHeader header, ReadHeader(bytes));
  RETURN_IF_ERROR(CheckImageSize("JPEG", header.width, header.height));
  // Before allocating: a few bytes claiming a huge frame are refused at once.
  if (EndsBeforeEoi(bytes)) {
    return absl::DataLossError(
        "JPEG: file is truncated (no end-of-image marker after the last scan)");
  }
  tjscalingfactor scale = PickScale(header, min_side);
  uint8_t* rgb = SizeImage(image, TJSCALED(header.width, scale), TJSCALED(header.height, scale));
  const bool cmyk = header.components == 4;
  const size_t pixels = static_cast<size_t>(image->width) * image->height;
  std::vector<uint8_t> cmyk_buffer(cmyk ? pixels * 4 : 0);
  uint8_t* out = cmyk ? cmyk_buffer.data() : rgb;
  tjhandle tj = ThreadDecompressor::Get();
  if (tj == nullptr) return absl::InternalError("JPEG: tjInitDecompress failed");
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  if (tjDecompress2(tj, data, bytes.size(), out, image->width, 0, image->height,
                    cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_LIMITSCANS) != 0) {
    const std::string message = tjGetErrorStr2(tj);
    const bool warning = tjGetErrorCode(tj) == TJERR_WARNING;
    ThreadDecompressor::Discard();
    if (!warning || IsTruncationWarning(message)) {
      return absl::DataLossError(absl::StrCat("JPEG: ", message));
    }
  }
  if (cmyk) InvertedCmykToRgb(cmyk_buffer.data(), pixels, rgb);
  return absl::OkStatus();
}

}  // namespace clipscale::image_internal
