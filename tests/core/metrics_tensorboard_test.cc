// TensorBoard event files: CRC-32C, TFRecord framing, and TensorBoard's own
// Python loader reading back exactly what TensorBoardWriter wrote.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "core/crc32c.h"
#include "core/file_util.h"
#include "core/tensorboard_event.pb.h"
#include "core/tensorboard_writer.h"
#include "core/tfrecord.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

// The CRC's definition, one bit at a time (RFC 3720 B.4, reflected 0x1EDC6F41).
uint32_t BitwiseCrc32c(const std::string& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(std::string()), 0u);
  EXPECT_EQ(Crc32c(std::string("123456789")), 0xE3069283u);  // the CRC catalogue's check value
  // RFC 3720 appendix B.4.
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(descending), 0x113FDB5Cu);
}

TEST(Crc32cTest, SlicingMatchesBitwiseAtEveryLengthOffsetAndSplit) {
  std::mt19937 rng(7);
  std::string bytes(300, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t length = 0; offset + length <= 140; ++length) {
      const std::string piece = bytes.substr(offset, length);
      ASSERT_EQ(Crc32c(piece), BitwiseCrc32c(piece)) << offset << "+" << length;
    }
  }
  for (size_t split = 0; split <= bytes.size(); split += 13) {
    uint32_t crc = Crc32c(bytes.data(), split);
    crc = Crc32cExtend(crc, bytes.data() + split, bytes.size() - split);
    EXPECT_EQ(crc, Crc32c(bytes)) << split;
  }
}

TEST(Crc32cTest, MaskMatchesTensorFlowsFormulaAndUnmasks) {
  for (uint32_t crc : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu, 0x80000000u}) {
    const uint32_t expected = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    EXPECT_EQ(MaskCrc32c(crc), expected);
    EXPECT_EQ(UnmaskCrc32c(MaskCrc32c(crc)), crc);
  }
}

TEST(TfRecordTest, RoundTripsAndRejectsEveryKindOfDamage) {
  std::string stream;
  const std::vector<std::string> records = {"", "a", std::string(1000, 'x'), "tail"};
  for (const auto& r : records) AppendTfRecord(r, &stream);
  ASSERT_EQ(stream.size(), 4 * 16 + 1 + 1000 + 4);
  auto parsed = ParseTfRecords(stream);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, records);

  // Record 1 ("a") starts at byte 16: length 16..23, length CRC 24..27, data
  // 28, data CRC 29..32. Any flipped byte must be caught, and so must a cut.
  for (size_t byte = 16; byte < 33; ++byte) {
    std::string damaged = stream;
    damaged[byte] ^= 0x01;
    auto result = ParseTfRecords(damaged);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << "byte " << byte;
  }
  for (size_t cut : {stream.size() - 1, stream.size() - 4, size_t{20}, size_t{30}}) {
    EXPECT_EQ(ParseTfRecords(stream.substr(0, cut)).status().code(), absl::StatusCode::kDataLoss)
        << "cut at " << cut;
  }
}

TEST(TensorBoardWriterTest, ToTensorBoardFloatRoundsLikeTheHardwareWithoutOverflowUB) {
  EXPECT_EQ(ToTensorBoardFloat(0.1), 0.1f);
  EXPECT_EQ(ToTensorBoardFloat(-3.5), -3.5f);
  EXPECT_EQ(ToTensorBoardFloat(double{FLT_MAX}), FLT_MAX);
  // Half of float's top ulp is 2^103 ~ 1e31, i.e. 3e-8 of FLT_MAX: below it the
  // nearest float is FLT_MAX, above it infinity.
  EXPECT_EQ(ToTensorBoardFloat(double{FLT_MAX} * (1 + 1e-8)), FLT_MAX);
  EXPECT_EQ(ToTensorBoardFloat(-double{FLT_MAX} * (1 + 1e-8)), -FLT_MAX);
  EXPECT_EQ(ToTensorBoardFloat(double{FLT_MAX} * (1 + 1e-7)),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(ToTensorBoardFloat(-1e300), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(ToTensorBoardFloat(std::nan(""))));
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Per tag, the (step, value) pairs logged, in order. Values are doubles, as the
// trainer passes them; TensorBoard must see each rounded to float32.
using Expected = std::map<std::string, std::vector<std::pair<int64_t, double>>>;

// Logs `expected` through `writer` tag by tag: with file_version 2 TensorBoard
// keeps per-tag order and does not purge when steps go back across tags.
void LogAll(const Expected& expected, TensorBoardWriter& writer) {
  for (const auto& [tag, points] : expected) {
    for (const auto& [step, value] : points) writer.Scalar(tag, value, step);
  }
}

nlohmann::json ReadWithTensorBoard(const std::string& log_dir, const std::string& out) {
  auto result = testing::RunPythonScript("tb_read_scalars.py", {log_dir, out});
  EXPECT_TRUE(result.ok()) << result.status();
  auto text = ReadFile(out);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? nlohmann::json::parse(*text) : nlohmann::json();
}

uint32_t Bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

TEST(TensorBoardWriterTest, TensorBoardReadsBackEveryTagStepAndFloat32Value) {
  const std::string dir = testing::MakeTempDir();
  const std::string log_dir = dir + "/run";
  Expected expected;
  for (int64_t step = 0; step < 300; ++step) {
    expected["train/loss"].push_back({step, 8.0 * std::cos(step * 0.37)});
    if (step % 10 == 0) expected["train/lr"].push_back({step, 1e-4 * step});
  }
  const int64_t big = int64_t{1} << 40;
  expected["big/steps"] = {{big, 1.5}, {big + 1, -2.25}, {int64_t{1} << 62, 3.0}};
  const double inf = std::numeric_limits<double>::infinity();
  // Out-of-range doubles are covered above; a float cast of them is undefined.
  expected["special"] = {
      {0, std::nan("")},     {1, inf},  {2, -inf}, {3, -0.0}, {4, 1e-40}, {5, double{FLT_MAX}},
      {6, -double{FLT_MIN}}, {7, 1e-50}};
  expected["损失/ünïcode tag"] = {{7, 0.25}};

  const double start = UnixNow();
  std::string path;
  {
    auto writer = TensorBoardWriter::Create(log_dir);
    ASSERT_TRUE(writer.ok()) << writer.status();
    path = (*writer)->path();
    LogAll(expected, **writer);
    ASSERT_TRUE((*writer)->Flush().ok());
    (*writer)->Scalar("after_flush", 42.0, 9);  // reaches disk through the destructor
  }
  expected["after_flush"] = {{9, 42.0}};
  const double end = UnixNow();

  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  const std::regex name(std::string(R"(events\.out\.tfevents\.\d{10}\.)") + host + R"(\.)" +
                        std::to_string(getpid()) + R"(\.\d+)");
  EXPECT_TRUE(std::regex_match(std::filesystem::path(path).filename().string(), name)) << path;

  const nlohmann::json read = ReadWithTensorBoard(log_dir, dir + "/scalars.json");
  EXPECT_EQ(read["file_version"], 2.0);  // parsed from "brain.Event:2"
  ASSERT_EQ(read["scalars"].size(), expected.size()) << read.dump();
  for (const auto& [tag, points] : expected) {
    ASSERT_TRUE(read["scalars"].contains(tag)) << tag;
    const auto& got = read["scalars"][tag];
    ASSERT_EQ(got.size(), points.size()) << tag;
    double previous_time = start;
    for (size_t i = 0; i < points.size(); ++i) {
      EXPECT_EQ(got[i]["step"].get<int64_t>(), points[i].first) << tag << " #" << i;
      const uint32_t bits = got[i]["bits"].get<uint32_t>();
      const float want = static_cast<float>(points[i].second);
      if (std::isnan(want)) {
        EXPECT_EQ(bits & 0x7F800000u, 0x7F800000u) << tag << " #" << i;  // NaN or inf...
        EXPECT_NE(bits & 0x007FFFFFu, 0u) << tag << " #" << i;           // ...and not inf
      } else {
        EXPECT_EQ(bits, Bits(want)) << tag << " #" << i << ": " << points[i].second;
      }
      const double wall_time = got[i]["wall_time"].get<double>();
      EXPECT_GE(wall_time, previous_time);
      EXPECT_LE(wall_time, end);
      previous_time = wall_time;
    }
  }
}

TEST(TensorBoardWriterTest, EveryRecordIsAnEventAndTheFirstCarriesTheVersion) {
  const std::string dir = testing::MakeTempDir();
  std::string path;
  {
    auto writer = TensorBoardWriter::Create(dir);
    ASSERT_TRUE(writer.ok()) << writer.status();
    path = (*writer)->path();
    for (int step = 0; step < 5; ++step) (*writer)->Scalar("x", step, step);
  }
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  auto records = ParseTfRecords(*bytes);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 6u);
  tensorflow::Event event;
  ASSERT_TRUE(event.ParseFromString((*records)[0]));
  EXPECT_EQ(event.file_version(), "brain.Event:2");
  for (int step = 0; step < 5; ++step) {
    ASSERT_TRUE(event.ParseFromString((*records)[step + 1]));
    EXPECT_EQ(event.step(), step);
    ASSERT_EQ(event.summary().value_size(), 1);
    EXPECT_EQ(event.summary().value(0).tag(), "x");
    EXPECT_EQ(event.summary().value(0).simple_value(), static_cast<float>(step));
  }
}

// TensorBoard checks our checksums: a damaged record ends what it reads there.
TEST(TensorBoardWriterTest, TensorBoardStopsAtACorruptedRecord) {
  const std::string dir = testing::MakeTempDir();
  const std::string log_dir = dir + "/run";
  std::string path;
  {
    auto writer = TensorBoardWriter::Create(log_dir);
    ASSERT_TRUE(writer.ok()) << writer.status();
    path = (*writer)->path();
    for (int step = 0; step < 10; ++step) (*writer)->Scalar("x", step, step);
  }
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  auto records = ParseTfRecords(*bytes);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 11u);
  // Records 0..5 are the version and steps 0..4; damage the data of step 5's.
  size_t offset = 0;
  for (int i = 0; i < 6; ++i) offset += 16 + (*records)[i].size();
  std::string damaged = *bytes;
  damaged[offset + 12 + 2] ^= 0x20;
  ASSERT_TRUE(WriteFileAtomically(path, damaged).ok());

  const nlohmann::json read = ReadWithTensorBoard(log_dir, dir + "/scalars.json");
  const auto& got = read["scalars"]["x"];
  ASSERT_EQ(got.size(), 5u) << read.dump();
  for (int step = 0; step < 5; ++step) EXPECT_EQ(got[step]["step"].get<int>(), step);
}

TEST(TensorBoardWriterTest, UncreatableLogDirIsAStatus) {
  const std::string dir = testing::MakeTempDir();
  ASSERT_TRUE(WriteFileAtomically(dir + "/file", "x").ok());
  auto writer = TensorBoardWriter::Create(dir + "/file/run");
  EXPECT_FALSE(writer.ok());
}

}  // namespace
}  // namespace clipscale
