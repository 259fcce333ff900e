// Tar shards: what we write, Python's tarfile reads byte for byte, and what
// Python writes (pax headers, long names), we read; damage is reported.
#include "data/tar.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/file_util.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

std::vector<TarMember> ReadAll(const std::string& path, absl::Status* status) {
  std::vector<TarMember> members;
  *status = ReadTar(path, [&](const TarMember& m) {
    members.push_back(m);
    return absl::OkStatus();
  });
  return members;
}

TEST(TarTest, PythonReadsWhatWeWrite) {
  const std::string path = testing::MakeTempDir() + "/out.tar";
  auto writer = TarWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  const std::string long_name = "dir/" + std::string(120, 'n') + "/000000007.jpg";
  ASSERT_TRUE(writer->Add("000000001.txt", "hello").ok());
  ASSERT_TRUE(writer->Add("000000001.json", std::string(513, 'j')).ok());
  ASSERT_TRUE(writer->Add(long_name, "").ok());
  ASSERT_TRUE(writer->Close().ok());
  auto out = testing::RunPythonScript("tar_check.py", {"read", path});
  ASSERT_TRUE(out.ok()) << out.status();
  auto listing = nlohmann::json::parse(*out);
  ASSERT_EQ(listing.size(), 3u);
  EXPECT_EQ(listing[0][0], "000000001.txt");
  EXPECT_EQ(listing[1][1], 513);
  EXPECT_EQ(listing[2][0], long_name);
  absl::Status status;
  auto members = ReadAll(path, &status);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].content, "hello");
  EXPECT_EQ(members[2].name, long_name);
}

TEST(TarTest, WeReadWhatPythonWrites) {
  const std::string path = testing::MakeTempDir() + "/py.tar";
  ASSERT_TRUE(testing::RunPythonScript("tar_check.py", {"write", path}).ok());
  absl::Status status;
  auto members = ReadAll(path, &status);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(members.size(), 4u);  // the directory is skipped
  EXPECT_EQ(members[0].name, "folder/000000001.txt");
  EXPECT_EQ(members[1].name, "deep/" + std::string(150, 'x') + "/000000002.txt");
  EXPECT_EQ(members[2].name, "caf\xc3\xa9/000000003.txt");
  EXPECT_EQ(members[3].content.size(), 256u * 40);
}

TEST(TarTest, TruncatedArchiveKeepsEarlierMembersAndReportsDataLoss) {
  const std::string dir = testing::MakeTempDir();
  auto writer = TarWriter::Create(dir + "/full.tar");
  ASSERT_TRUE(writer.ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(writer->Add(std::to_string(i) + ".txt", std::string(700, 'a' + i)).ok());
  ASSERT_TRUE(writer->Close().ok());
  auto bytes = ReadFile(dir + "/full.tar");
  ASSERT_TRUE(bytes.ok());
  // Each member is a 512-byte header and 700 bytes padded to 1024; cut in the fourth.
  std::ofstream(dir + "/cut.tar", std::ios::binary) << bytes->substr(0, 3 * 1536 + 512 + 100);
  absl::Status status;
  auto members = ReadAll(dir + "/cut.tar", &status);
  EXPECT_EQ(members.size(), 3u);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  // A flipped header byte fails the checksum.
  std::string damaged = *bytes;
  damaged[1536 + 10] ^= 0x20;
  std::ofstream(dir + "/bad.tar", std::ios::binary) << damaged;
  members = ReadAll(dir + "/bad.tar", &status);
  EXPECT_EQ(members.size(), 1u);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadTar(dir + "/missing.tar", [](const TarMember&) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace clipscale
