// A JPEG cut short is refused as Pillow refuses it, also when libjpeg's first
// warning was a harmless one (TurboJPEG reports only the first warning's text).
#include <gtest/gtest.h>

#include "core/file_util.h"
#include "data/image.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

TEST(ImageTruncationTest, TruncatedJpegAfterAHarmlessWarningIsDataLossAsInPillow) {
  const std::string dir = testing::MakeTempDir();
  auto out = testing::RunPythonScript("jpeg_truncation.py", {dir});
  ASSERT_TRUE(out.ok()) << out.status();
  const auto pillow_decodes = nlohmann::json::parse(*out);
  // The control: junk before a marker is a warning Pillow (and we) decode through.
  ASSERT_TRUE(pillow_decodes["junk.jpg"].get<bool>());
  for (const auto& [name, decodes] : pillow_decodes.items()) {
    auto bytes = ReadFile(dir + "/" + name);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    for (int min_side : {0, 16}) {
      const absl::StatusOr<Image> image = DecodeImageScaled(*bytes, min_side);
      if (decodes.get<bool>()) {
        ASSERT_TRUE(image.ok()) << name << ": " << image.status();
        EXPECT_EQ(image->width, min_side ? 32 : 64) << name;
      } else {
        EXPECT_EQ(image.status().code(), absl::StatusCode::kDataLoss)
            << name << ": " << image.status();
      }
    }
  }
}

}  // namespace
}  // namespace clipscale
