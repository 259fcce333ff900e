// metrics.jsonl, the fan-out logger, buffering and I/O errors, and the
// progress line.
#include "core/metrics.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/file_util.h"
#include "core/tfrecord.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<nlohmann::ordered_json> ReadJsonLines(const std::string& path) {
  auto text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  std::vector<nlohmann::ordered_json> lines;
  std::istringstream in(text.ok() ? *text : "");
  for (std::string line; std::getline(in, line);)
    lines.push_back(nlohmann::ordered_json::parse(line));
  return lines;
}

std::vector<std::string> Keys(const nlohmann::ordered_json& object) {
  std::vector<std::string> keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  return keys;
}

TEST(JsonlWriterTest, GroupsEachStepIntoOneLineThatParsesBackExactly) {
  const std::string path = testing::MakeTempDir() + "/metrics.jsonl";
  const int64_t big = (int64_t{1} << 53) + 1;  // not representable as a double
  const double start = UnixNow();
  {
    auto writer = JsonlWriter::Create(path);
    ASSERT_TRUE(writer.ok()) << writer.status();
    (*writer)->Scalar("train/loss", 3.14159265358979, 10);
    (*writer)->Scalar("train/lr", 1e-4 / 3, 10);
    (*writer)->Scalar("train/loss", -2.5, 10);  // same step: last value wins, order kept
    (*writer)->Scalar("eval/acc", std::nan(""), 20);
    (*writer)->Scalar("eval/inf", -std::numeric_limits<double>::infinity(), 20);
    (*writer)->Scalar("train/loss", 5e-324, big);  // smallest subnormal double
  }                                                // the destructor writes the pending step
  const double end = UnixNow();

  const auto lines = ReadJsonLines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(Keys(lines[0]), (std::vector<std::string>{"step", "time", "train/loss", "train/lr"}));
  EXPECT_EQ(lines[0]["step"].get<int64_t>(), 10);
  EXPECT_EQ(lines[0]["train/loss"].get<double>(), -2.5);
  EXPECT_EQ(lines[0]["train/lr"].get<double>(), 1e-4 / 3);  // 17 digits round-trip exactly
  EXPECT_EQ(Keys(lines[1]), (std::vector<std::string>{"step", "time", "eval/acc", "eval/inf"}));
  EXPECT_TRUE(lines[1]["eval/acc"].is_null());
  EXPECT_TRUE(lines[1]["eval/inf"].is_null());
  EXPECT_EQ(lines[2]["step"].get<int64_t>(), big);
  EXPECT_EQ(lines[2]["train/loss"].get<double>(), 5e-324);
  double previous = start;
  for (const auto& line : lines) {
    EXPECT_GE(line["time"].get<double>(), previous);
    EXPECT_LE(line["time"].get<double>(), end);
    previous = line["time"].get<double>();
  }
}

TEST(JsonlWriterTest, AResumedRunAppendsToTheSameFile) {
  const std::string path = testing::MakeTempDir() + "/metrics.jsonl";
  for (int64_t step : {1, 2}) {
    auto writer = JsonlWriter::Create(path);
    ASSERT_TRUE(writer.ok()) << writer.status();
    (*writer)->Scalar("loss", static_cast<double>(step), step);
  }
  const auto lines = ReadJsonLines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_EQ(lines[1]["step"], 2);
}

TEST(JsonlWriterTest, BytesStayBufferedUntilThePolicySaysOtherwise) {
  const std::string dir = testing::MakeTempDir();
  FlushPolicy lazy{/*interval_seconds=*/3600, /*max_buffered_bytes=*/1 << 20};
  FlushPolicy eager{/*interval_seconds=*/0, /*max_buffered_bytes=*/1 << 20};
  FlushPolicy small{/*interval_seconds=*/3600, /*max_buffered_bytes=*/200};
  auto lazy_writer = JsonlWriter::Create(dir + "/lazy.jsonl", lazy);
  auto eager_writer = JsonlWriter::Create(dir + "/eager.jsonl", eager);
  auto small_writer = JsonlWriter::Create(dir + "/small.jsonl", small);
  ASSERT_TRUE(lazy_writer.ok() && eager_writer.ok() && small_writer.ok());
  for (int64_t step = 0; step < 10; ++step) {
    for (auto* writer : {&*lazy_writer, &*eager_writer, &*small_writer}) {
      (*writer)->Scalar("loss", 1.0, step);
    }
  }
  // Step 9 is still being gathered, so at most 9 lines can be out.
  EXPECT_EQ(std::filesystem::file_size(dir + "/lazy.jsonl"), 0u);
  EXPECT_EQ(ReadJsonLines(dir + "/eager.jsonl").size(), 9u);
  const size_t small_lines = ReadJsonLines(dir + "/small.jsonl").size();
  EXPECT_GT(small_lines, 0u);  // each line is ~50 bytes, so 200 forces writes
  EXPECT_LT(small_lines, 9u);
  ASSERT_TRUE((*lazy_writer)->Flush().ok());
  EXPECT_EQ(ReadJsonLines(dir + "/lazy.jsonl").size(), 10u);
}

TEST(JsonlWriterTest, AFullDiskIsAStickyStatusNotACrash) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  auto writer = JsonlWriter::Create("/dev/full");
  ASSERT_TRUE(writer.ok()) << writer.status();
  (*writer)->Scalar("loss", 1.0, 1);
  absl::Status status = (*writer)->Flush();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(std::string(status.message()).find("/dev/full"), std::string::npos) << status;
  (*writer)->Scalar("loss", 1.0, 2);
  EXPECT_EQ((*writer)->Flush(), status);
}

TEST(JsonlWriterTest, UnopenablePathIsAStatus) {
  const std::string dir = testing::MakeTempDir();
  EXPECT_FALSE(JsonlWriter::Create(dir + "/missing/metrics.jsonl").ok());
}

TEST(MetricsLoggerTest, FansOutToTensorBoardAndJsonlFromSeveralThreads) {
  const std::string log_dir = testing::MakeTempDir() + "/run";
  auto logger = OpenMetricsLogger(log_dir);
  ASSERT_TRUE(logger.ok()) << logger.status();
  constexpr int kThreads = 4, kPerThread = 250;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) (*logger)->Scalar("t" + std::to_string(t), i, 7);
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE((*logger)->Flush().ok());

  const auto lines = ReadJsonLines(log_dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 1u);  // one step, so one line whatever the interleaving
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(lines[0]["t" + std::to_string(t)], kPerThread - 1);

  std::vector<std::string> event_files;
  for (const auto& entry : std::filesystem::directory_iterator(log_dir)) {
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
      event_files.push_back(entry.path().string());
    }
  }
  ASSERT_EQ(event_files.size(), 1u);
  auto bytes = ReadFile(event_files[0]);
  ASSERT_TRUE(bytes.ok());
  auto records = ParseTfRecords(*bytes);  // a torn record would fail its checksum
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 1u + kThreads * kPerThread);
}

TEST(MetricsLoggerTest, FlushReportsASinkErrorAndStillFlushesTheOthers) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const std::string path = testing::MakeTempDir() + "/metrics.jsonl";
  MetricsLogger logger;
  auto full = JsonlWriter::Create("/dev/full");
  auto good = JsonlWriter::Create(path);
  ASSERT_TRUE(full.ok() && good.ok());
  logger.AddSink(std::move(*full));
  logger.AddSink(std::move(*good));
  logger.Scalar("loss", 0.5, 3);
  EXPECT_FALSE(logger.Flush().ok());
  const auto lines = ReadJsonLines(path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["loss"], 0.5);
}

TEST(ProgressTest, FormatsStepsLossThroughputAndEta) {
  EXPECT_EQ(FormatProgress(120, 1000, 3.412, 812.4, 65),
            "step 120/1000  loss 3.412  812.4 samples/s  ETA 00:01:05");
  EXPECT_EQ(FormatProgress(5, 0, 0.01234, 3, 3661.4),
            "step 5  loss 0.01234  3.0 samples/s  ETA 01:01:01");
  EXPECT_EQ(FormatProgress(1, 2, 10.5, 0, 360000),
            "step 1/2  loss 10.5  0.0 samples/s  ETA 100:00:00");
  EXPECT_EQ(FormatProgress(1, 2, 1, 1, std::nan("")),
            "step 1/2  loss 1  1.0 samples/s  ETA --:--:--");
  EXPECT_EQ(FormatProgress(1, 2, 1, 1, -1), "step 1/2  loss 1  1.0 samples/s  ETA --:--:--");
}

TEST(ProgressTest, IsTerminalTellsAPseudoTerminalFromAFile) {
  EXPECT_FALSE(IsTerminal(nullptr));
  FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  EXPECT_FALSE(IsTerminal(file));
  std::fclose(file);

  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) GTEST_SKIP() << "no ptys";
  FILE* tty = std::fopen(ptsname(master), "w");
  ASSERT_NE(tty, nullptr);
  EXPECT_TRUE(IsTerminal(tty));
  std::fclose(tty);
  close(master);
}

}  // namespace
}  // namespace clipscale
