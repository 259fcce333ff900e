// Decoding parity with Pillow (Image.open(f).convert("RGB")) and error
// handling for files Pillow refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "data/image.h"
#include "tests/data/image_reference.h"

namespace clipscale {
namespace {

using testing::GetImageReference;
using testing::ReadFileBytes;
using testing::ReadRawArray;

int MaxAbsDiff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int max_diff = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(int{a[i]} - int{b[i]}));
  }
  return max_diff;
}

// Every file, every format: the same pixels as Pillow. For JPEG this relies on
// both sides running libjpeg-turbo's ISLOW IDCT and fancy upsampling, which are
// fixed integer algorithms (SIMD and C paths are bit-identical) that did not
// change between Debian's 2.1.5 and Pillow's bundled 3.x, so the tolerance is 0
// too: a difference means a different decode path (e.g. fast DCT), not noise.
TEST(ImageDecodeTest, MatchesPillow) {
  const auto& ref = GetImageReference();
  ASSERT_FALSE(ref.manifest["images"].empty());
  for (const auto& entry : ref.manifest["images"]) {
    const std::string name = entry["name"];
    absl::StatusOr<Image> image = ReadImageFile(ref.Path(entry["file"]));
    ASSERT_TRUE(image.ok()) << name << ": " << image.status();
    EXPECT_EQ(image->width, entry["width"].get<int>()) << name;
    EXPECT_EQ(image->height, entry["height"].get<int>()) << name;
    std::vector<uint8_t> expected = ReadRawArray<uint8_t>(ref.Path(entry["decoded"]));
    ASSERT_EQ(image->rgb.size(), expected.size()) << name;
    int max_diff = MaxAbsDiff(image->rgb, expected);
    std::printf("%-28s %-5s %5dx%-5d decode max |diff| %d\n", name.c_str(),
                entry["mode"].get<std::string>().c_str(), image->width, image->height, max_diff);
    EXPECT_EQ(max_diff, 0) << name;
  }
}

// Pillow refuses every one of these files; so must we, with a status naming
// the problem, never a crash or an exit() from inside libjpeg/libpng.
TEST(ImageDecodeTest, CorruptFilesGiveErrors) {
  const auto& ref = GetImageReference();
  ASSERT_FALSE(ref.manifest["errors"].empty());
  for (const auto& entry : ref.manifest["errors"]) {
    const std::string name = entry["name"];
    EXPECT_NE(entry["pillow_error"].get<std::string>(), "")
        << name << " is not an error for Pillow";
    absl::StatusOr<Image> image = DecodeImage(ReadFileBytes(ref.Path(entry["file"])));
    ASSERT_FALSE(image.ok()) << name << " decoded to " << image->width << "x" << image->height;
    const absl::StatusCode code = image.status().code();
    EXPECT_TRUE(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kDataLoss ||
                code == absl::StatusCode::kResourceExhausted)
        << name << ": " << image.status();
    std::printf("%-24s -> %s\n", name.c_str(), image.status().ToString().c_str());
    if (name.find("bomb") != std::string::npos) {
      EXPECT_NE(image.status().message().find("decompression bomb"), absl::string_view::npos);
      EXPECT_EQ(code, absl::StatusCode::kResourceExhausted);
    }
    if (name.find("truncated_half") != std::string::npos) {
      EXPECT_EQ(code, absl::StatusCode::kDataLoss) << name << ": " << image.status();
    }
  }
}

TEST(ImageDecodeTest, SniffsFormatsAndNamesMissingFiles) {
  EXPECT_EQ(SniffImageFormat("\xFF\xD8\xFF\xE0"), ImageFormat::kJpeg);
  EXPECT_EQ(SniffImageFormat("\x89PNG\r\n\x1A\n...."), ImageFormat::kPng);
  EXPECT_EQ(SniffImageFormat(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)), ImageFormat::kWebp);
  EXPECT_EQ(SniffImageFormat(std::string("RIFF\x10\0\0\0WAVEfmt ", 16)), ImageFormat::kUnknown);
  EXPECT_EQ(SniffImageFormat("\xFF\xD8"), ImageFormat::kUnknown);
  absl::StatusOr<Image> missing = ReadImageFile("/nonexistent/dir/x.jpg");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/dir/x.jpg"), absl::string_view::npos);
}

// The JPEG decoder handle is reused per thread: a warning or an error on one
// image must not leak into the next, and threads must not share state.
TEST(ImageDecodeTest, DecoderStateDoesNotLeakBetweenImagesOrThreads) {
  const auto& ref = GetImageReference();
  const std::string clean = ReadFileBytes(ref.Path("jpeg_640x480"));
  const std::string warning = ReadFileBytes(ref.Path("jpeg_extraneous_bytes"));
  const std::string truncated = ReadFileBytes(ref.Path("error_jpeg_truncated_half"));
  absl::StatusOr<Image> expected = DecodeImage(clean);
  ASSERT_TRUE(expected.ok()) << expected.status();
  auto decode_sequence = [&](int* failures) {
    for (int i = 0; i < 3; ++i) {
      *failures += !DecodeImage(warning).ok();
      *failures += DecodeImage(truncated).ok();
      absl::StatusOr<Image> image = DecodeImage(clean);
      *failures += !image.ok() || image->rgb != expected->rgb;
    }
  };
  int failures[2] = {0, 0};
  std::thread other(decode_sequence, &failures[1]);
  decode_sequence(&failures[0]);
  other.join();
  EXPECT_EQ(failures[0], 0);
  EXPECT_EQ(failures[1], 0);
}

// The scaled fast path against Pillow's draft() decode of the same files:
// same scale choice, same DCT-domain scaling, same pixels.
TEST(ImageDecodeTest, ScaledJpegDecodeMatchesPillowDraft) {
  const auto& ref = GetImageReference();
  ASSERT_FALSE(ref.manifest["drafts"].empty());
  for (const auto& entry : ref.manifest["drafts"]) {
    const std::string source = entry["source"];
    const int min_side = entry["min_side"];
    absl::StatusOr<Image> scaled = DecodeImageScaled(ReadFileBytes(ref.Path(source)), min_side);
    ASSERT_TRUE(scaled.ok()) << scaled.status();
    EXPECT_EQ(scaled->width, entry["width"].get<int>()) << source << " " << min_side;
    EXPECT_EQ(scaled->height, entry["height"].get<int>()) << source << " " << min_side;
    EXPECT_GE(std::min(scaled->width, scaled->height),
              std::min({min_side, entry["width"].get<int>(), entry["height"].get<int>()}));
    std::vector<uint8_t> expected = ReadRawArray<uint8_t>(ref.Path(entry["output"]));
    ASSERT_EQ(scaled->rgb.size(), expected.size());
    EXPECT_EQ(MaxAbsDiff(scaled->rgb, expected), 0) << source << " " << min_side;
  }
  const std::string png = ReadFileBytes(ref.Path("png_rgb_225x300"));
  absl::StatusOr<Image> png_scaled = DecodeImageScaled(png, 50);
  ASSERT_TRUE(png_scaled.ok());
  EXPECT_EQ(png_scaled->rgb, DecodeImage(png)->rgb);
}

// One Image reused for every file, as a decode thread reuses its buffer:
// formats and sizes alternate (the buffer grows and shrinks) and refused
// files come in between, yet each decode equals a decode into a fresh Image.
TEST(ImageDecodeTest, DecodeIntoAReusedImageEqualsAFreshDecode) {
  const auto& ref = GetImageReference();
  Image reused;
  int decoded = 0;
  for (int min_side : {0, 60}) {
    for (const auto& entry : ref.manifest["images"]) {
      const std::string name = entry["name"];
      const std::string bytes = ReadFileBytes(ref.Path(entry["file"]));
      absl::StatusOr<Image> fresh = DecodeImageScaled(bytes, min_side);
      ASSERT_TRUE(fresh.ok()) << name << ": " << fresh.status();
      ASSERT_TRUE(DecodeImageInto(bytes, min_side, &reused).ok()) << name;
      EXPECT_EQ(reused.width, fresh->width) << name;
      EXPECT_EQ(reused.height, fresh->height) << name;
      EXPECT_EQ(reused.rgb, fresh->rgb) << name << " min_side " << min_side;
      ++decoded;
      const auto& errors = ref.manifest["errors"];
      const auto& bad = errors[decoded % errors.size()];
      EXPECT_FALSE(DecodeImageInto(ReadFileBytes(ref.Path(bad["file"])), min_side, &reused).ok())
          << bad["name"].get<std::string>();
    }
  }
  EXPECT_GT(decoded, 10);
}

}  // namespace
}  // namespace clipscale
