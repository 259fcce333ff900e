// Pillow's bicubic resize, torchvision's center crop and open_clip's eval
// preprocess, compared bit for bit with the venv's Pillow/torchvision/open_clip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/random.h"
#include "data/image.h"
#include "data/image_codecs.h"
#include "data/transforms.h"
#include "tests/data/image_reference.h"

namespace clipscale {
namespace {

using testing::GetImageReference;
using testing::ReadRawArray;

// Pillow's own decode of a reference file, so these tests check the transforms
// alone, whatever the decoders do.
Image PillowDecoded(const std::string& name) {
  const auto& ref = GetImageReference();
  for (const auto& entry : ref.manifest["images"]) {
    if (entry["name"] != name) continue;
    Image image;
    image.width = entry["width"];
    image.height = entry["height"];
    image.rgb = ReadRawArray<uint8_t>(ref.Path(entry["decoded"]));
    return image;
  }
  ADD_FAILURE() << "no reference image " << name;
  return Image();
}

int CountDifferent(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int count = 0;
  for (size_t i = 0; i < a.size(); ++i) count += a[i] != b[i];
  return count;
}

// Identical uint8 output: same coefficients, same fixed-point rounding, same
// pass order. Cases cover down- and up-scaling, one axis only, extreme ratios
// and a 1x1 source.
TEST(ImageTransformTest, ResizeMatchesPillowBicubic) {
  const auto& ref = GetImageReference();
  ASSERT_FALSE(ref.manifest["resizes"].empty());
  for (const auto& entry : ref.manifest["resizes"]) {
    Image source = PillowDecoded(entry["source"]);
    const int width = entry["width"], height = entry["height"];
    Image out = Resize(source, width, height);
    ASSERT_EQ(out.width, width);
    ASSERT_EQ(out.height, height);
    std::vector<uint8_t> expected = ReadRawArray<uint8_t>(ref.Path(entry["output"]));
    ASSERT_EQ(out.rgb.size(), expected.size());
    EXPECT_EQ(CountDifferent(out.rgb, expected), 0)
        << entry["source"].get<std::string>() << " -> " << width << "x" << height;
  }
}

// Includes crops larger than the image (zero padding, odd amounts) and odd
// margins where Python's round-half-to-even decides the offset.
TEST(ImageTransformTest, CenterCropMatchesTorchvision) {
  const auto& ref = GetImageReference();
  ASSERT_FALSE(ref.manifest["crops"].empty());
  for (const auto& entry : ref.manifest["crops"]) {
    Image source = PillowDecoded(entry["source"]);
    const int width = entry["width"], height = entry["height"];
    Image out = CenterCrop(source, width, height);
    std::vector<uint8_t> expected = ReadRawArray<uint8_t>(ref.Path(entry["output"]));
    ASSERT_EQ(out.rgb.size(), expected.size());
    EXPECT_EQ(CountDifferent(out.rgb, expected), 0)
        << entry["source"].get<std::string>() << " crop " << width << "x" << height;
  }
}

// The whole eval preprocess, from file bytes to the normalised tensor, against
// open_clip.image_transform(224, is_train=False) on Pillow's RGB image. The
// float32 arithmetic (v / 255 - mean) / std is the one torch performs, so the
// tensors are identical, not merely close: tolerance 0.
TEST(ImageTransformTest, EvalTransformMatchesOpenClip) {
  const auto& ref = GetImageReference();
  const int size = ref.manifest["image_size"];
  ASSERT_FALSE(ref.manifest["images"].empty());
  for (const auto& entry : ref.manifest["images"]) {
    const std::string name = entry["name"];
    std::vector<float> expected = ReadRawArray<float>(ref.Path(entry["eval"]));
    ASSERT_EQ(expected.size(), 3u * size * size) << name;
    absl::StatusOr<Image> image = ReadImageFile(ref.Path(entry["file"]));
    ASSERT_TRUE(image.ok()) << image.status();
    for (const Image& input : {*image, PillowDecoded(name)}) {
      std::vector<float> out = EvalTransform(input, size);
      float max_diff = 0;
      for (size_t i = 0; i < out.size(); ++i)
        max_diff = std::max(max_diff, std::abs(out[i] - expected[i]));
      EXPECT_EQ(std::memcmp(out.data(), expected.data(), out.size() * sizeof(float)), 0)
          << name << ": max |diff| " << max_diff;
    }
    // Feeding the unconverted image (as open_clip's CsvDataset does) is the same
    // for RGB and grey files; palette/alpha/16-bit files differ in Pillow itself.
    const std::string mode = entry["mode"];
    if (mode == "RGB" || mode == "L") {
      EXPECT_TRUE(entry["direct_equal"].get<bool>()) << name;
    }
  }
}

TEST(ImageTransformTest, GeometryRules) {
  Image tall{7, 300, std::vector<uint8_t>(7 * 300 * 3, 9)};
  Image resized = ResizeShortestSide(tall, 224);
  EXPECT_EQ(resized.width, 224);
  EXPECT_EQ(resized.height, 9600);  // int(224 * 300 / 7)
  Image wide{301, 224, std::vector<uint8_t>(301 * 224 * 3, 1)};
  Image same = ResizeShortestSide(wide, 224);
  EXPECT_EQ(same.width, 301);
  EXPECT_EQ(same.rgb, wide.rgb);
  // A flat image stays flat through bicubic (coefficients sum to 1 in fixed point).
  for (uint8_t v : Resize(tall, 13, 17).rgb) {
    ASSERT_EQ(v, 9);
  }
  std::vector<float> chw(3 * 4 * 4);
  NormalizeToCHW(Image{4, 4, std::vector<uint8_t>(48, 255)}, chw.data());
  EXPECT_FLOAT_EQ(chw[0], (1.0f - kOpenAiNormalization.mean[0]) / kOpenAiNormalization.std[0]);
  EXPECT_FLOAT_EQ(chw[47], (1.0f - kOpenAiNormalization.mean[2]) / kOpenAiNormalization.std[2]);
}

// ResizeRegion reads the box in place; it must give the bytes of Resize on a
// copy of the box, for both pass orders, growing and shrinking, and boxes that
// touch the image's edges (where the filter stops at the box, not the image).
TEST(ImageTransformTest, ResizeRegionEqualsResizeOfTheCopiedBox) {
  Image noise{97, 83, std::vector<uint8_t>(97 * 83 * 3)};
  SplitMix64 rng(7);
  for (uint8_t& v : noise.rgb) v = static_cast<uint8_t>(rng.Below(256));
  struct Case {
    int left, top, width, height, out_width, out_height;
  };
  const Case cases[] = {{0, 0, 97, 83, 64, 64},  {5, 3, 60, 70, 64, 64},  {37, 13, 60, 70, 224, 224},
                        {0, 40, 97, 43, 90, 7},  {20, 0, 11, 83, 40, 20}, {1, 1, 50, 50, 50, 17},
                        {30, 30, 40, 20, 40, 20}, {96, 82, 1, 1, 3, 2}};
  for (const Case& c : cases) {
    Image box{c.width, c.height, std::vector<uint8_t>(static_cast<size_t>(c.width) * c.height * 3)};
    for (int y = 0; y < c.height; ++y) {
      std::copy_n(&noise.rgb[(static_cast<size_t>(c.top + y) * noise.width + c.left) * 3],
                  c.width * 3, &box.rgb[static_cast<size_t>(y) * c.width * 3]);
    }
    const Image expected = Resize(box, c.out_width, c.out_height);
    const Image got = ResizeRegion(noise, c.left, c.top, c.width, c.height, c.out_width, c.out_height);
    EXPECT_EQ(got.width, c.out_width);
    EXPECT_EQ(got.height, c.out_height);
    EXPECT_EQ(got.rgb, expected.rgb) << c.left << "," << c.top << " " << c.width << "x" << c.height
                                     << " -> " << c.out_width << "x" << c.out_height;
  }
}

// NormalizeToCHW computes eight pixels at a time where the CPU allows and the
// rest one by one: every pixel, in every plane, is torch's float32
// (v / 255 - mean) / std, for sizes with and without a remainder of eight.
TEST(ImageTransformTest, NormalizeIsTorchsArithmeticForEveryPixel) {
  SplitMix64 rng(11);
  for (const auto [width, height] : {std::pair{1, 1}, {3, 5}, {8, 1}, {13, 7}, {224, 224}}) {
    Image image{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * height * 3)};
    for (uint8_t& v : image.rgb) v = static_cast<uint8_t>(rng.Below(256));
    const size_t plane = static_cast<size_t>(width) * height;
    std::vector<float> chw(3 * plane + 1, -1e30f);  // one guard element past the end
    NormalizeToCHW(image, chw.data());
    int wrong = 0;
    for (int c = 0; c < 3; ++c) {
      for (size_t i = 0; i < plane; ++i) {
        const float expected =
            (static_cast<float>(image.rgb[i * 3 + c]) / 255.0f - kOpenAiNormalization.mean[c]) /
            kOpenAiNormalization.std[c];
        wrong += std::memcmp(&chw[c * plane + i], &expected, sizeof(float)) != 0;
      }
    }
    EXPECT_EQ(wrong, 0) << width << "x" << height;
    EXPECT_EQ(chw[3 * plane], -1e30f) << width << "x" << height;
  }
}

// The same for other means and stds, over every value of every channel: the
// SIMD path either computes torch's quotients bit for bit or is not used
// (NormalizeToCHW checks it on all 256 values first), for the ImageNet and
// Inception constants and random ones.
TEST(ImageTransformTest, NormalizeIsTorchsArithmeticForOtherConstants) {
  std::vector<ImageNormalization> norms = {
      {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}},  // ImageNet
      {{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}},              // Inception (SigLIP)
      {{0.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f}}};
  SplitMix64 rng(12);
  for (int i = 0; i < 40; ++i) {
    ImageNormalization n;
    for (int c = 0; c < 3; ++c) {
      n.mean[c] = static_cast<float>(rng.Uniform(-1.0, 1.0));
      n.std[c] = static_cast<float>(rng.Uniform(0.01, 2.0));
    }
    norms.push_back(n);
  }
  // 264 pixels: each channel takes every value 0..255, in a different order.
  Image image{264, 1, std::vector<uint8_t>(264 * 3)};
  for (int v = 0; v < 264; ++v) {
    image.rgb[v * 3] = static_cast<uint8_t>(v);
    image.rgb[v * 3 + 1] = static_cast<uint8_t>(255 - v);
    image.rgb[v * 3 + 2] = static_cast<uint8_t>(v * 7 + 3);
  }
  const size_t plane = 264;
  std::vector<float> chw(3 * plane);
  for (const ImageNormalization& norm : norms) {
    NormalizeToCHW(image, chw.data(), norm);
    int wrong = 0;
    for (int c = 0; c < 3; ++c) {
      for (size_t i = 0; i < plane; ++i) {
        const float expected =
            (static_cast<float>(image.rgb[i * 3 + c]) / 255.0f - norm.mean[c]) / norm.std[c];
        wrong += std::memcmp(&chw[c * plane + i], &expected, sizeof(float)) != 0;
      }
    }
    EXPECT_EQ(wrong, 0) << "mean " << norm.mean[0] << " std " << norm.std[0];
  }
}

// The entry image_transform_test_portable runs every case here with
// CLIPSCALE_SIMD=off, through the loops CPUs without AVX2 run; this case checks
// that the setting reaches the switch (so that entry tests what it says).
TEST(ImageTransformTest, SimdSwitchFollowsTheEnvironment) {
  const char* setting = std::getenv("CLIPSCALE_SIMD");
  const bool off = setting != nullptr && std::string(setting) == "off";
#if defined(__GNUC__) && defined(__x86_64__)
  EXPECT_EQ(image_internal::UseAvx2(), !off && __builtin_cpu_supports("avx2"));
  EXPECT_EQ(image_internal::UseAvx2Fma(), image_internal::UseAvx2() && __builtin_cpu_supports("fma"));
#else
  EXPECT_FALSE(image_internal::UseAvx2());
#endif
}

// ResizeRegionInto reuses its output's buffer: resizes to other sizes, larger
// and smaller, into one Image give the bytes of ResizeRegion each time.
TEST(ImageTransformTest, ResizeIntoAReusedImageEqualsAFreshResize) {
  Image noise{97, 83, std::vector<uint8_t>(97 * 83 * 3)};
  SplitMix64 rng(5);
  for (uint8_t& v : noise.rgb) v = static_cast<uint8_t>(rng.Below(256));
  Image reused;
  for (const auto [out_width, out_height] : {std::pair{224, 224}, {9, 31}, {97, 83}, {300, 2}}) {
    ResizeRegionInto(noise, 3, 4, 90, 77, out_width, out_height, &reused);
    const Image fresh = ResizeRegion(noise, 3, 4, 90, 77, out_width, out_height);
    EXPECT_EQ(reused.width, out_width);
    EXPECT_EQ(reused.height, out_height);
    EXPECT_EQ(reused.rgb, fresh.rgb) << out_width << "x" << out_height;
  }
}

}  // namespace
}  // namespace clipscale
