// Tar shards: what we write, Python's tarfile reads byte for byte, and what
// Python writes (pax headers, long names), we read; damage is reported.
#include "data/tar.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "data/webdataset.h"
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

// [name, size, sha256] per regular member, as tar_check.py lists them.
using Listing = std::vector<std::tuple<std::string, uint64_t, std::string>>;

Listing PythonListing(const std::string& path) {
  auto out = testing::RunPythonScript("tar_check.py", {"read", path});
  EXPECT_TRUE(out.ok()) << out.status();
  Listing listing;
  if (!out.ok()) return listing;
  for (const auto& m : nlohmann::json::parse(*out)) {
    listing.emplace_back(m[0].get<std::string>(), m[1].get<uint64_t>(), m[2].get<std::string>());
  }
  return listing;
}

// The same listing from ReadTar; the member bytes are hashed by Python's hashlib.
Listing OurListing(const std::string& path) {
  absl::Status status;
  const std::vector<TarMember> members = ReadAll(path, &status);
  EXPECT_TRUE(status.ok()) << status;
  const std::string dir = path + ".members";  // beside the archive: MakeTempDir would wipe it
  std::filesystem::create_directories(dir);
  std::vector<std::string> files = {"hash"};
  for (size_t i = 0; i < members.size(); ++i) {
    files.push_back(absl::StrCat(dir, "/", i));
    std::ofstream(files.back(), std::ios::binary) << members[i].content;
  }
  auto out = testing::RunPythonScript("tar_check.py", files);
  EXPECT_TRUE(out.ok()) << out.status();
  Listing listing;
  if (!out.ok()) return listing;
  const auto hashes = nlohmann::json::parse(*out);
  for (size_t i = 0; i < members.size(); ++i) {
    listing.emplace_back(members[i].name, members[i].content.size(), hashes[i].get<std::string>());
  }
  return listing;
}

// Rewrites a ustar header's size field (12 bytes at 124) and its checksum.
void SetSizeField(std::string* archive, size_t header_at, const std::string& field) {
  ASSERT_EQ(field.size(), 12u);
  char* h = archive->data() + header_at;
  std::memcpy(h + 124, field.data(), 12);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += static_cast<unsigned char>(h[i]);
  const std::string chksum = absl::StrFormat("%06o", sum);
  std::memcpy(h + 148, chksum.c_str(), 7);  // six digits and NUL; byte 155 stays ' '
}

int64_t PeakRssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
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
  EXPECT_EQ(OurListing(path), PythonListing(path));  // names, sizes and bytes
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
  EXPECT_EQ(OurListing(path), PythonListing(path));
}

TEST(TarTest, GnuLongNamesFromPythonTarfile) {
  const std::string path = testing::MakeTempDir() + "/gnu.tar";
  ASSERT_TRUE(testing::RunPythonScript("tar_check.py", {"write-gnu", path}).ok());
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ((*bytes)[156], 'L');  // the first header is a GNU long name, not ustar or pax
  const Listing ours = OurListing(path);
  ASSERT_EQ(ours.size(), 4u);  // the symlink (with its `K` long link name) is skipped
  EXPECT_EQ(std::get<0>(ours[0]), std::string(150, 'a') + ".txt");
  EXPECT_EQ(std::get<0>(ours[1]),
            "dir/" + std::string(200, 'b') + "/" + std::string(120, 'c') + ".json");
  EXPECT_EQ(std::get<0>(ours[2]), "short.txt");  // the link's long names do not leak
  EXPECT_EQ(std::get<1>(ours[3]), 768u);
  EXPECT_EQ(ours, PythonListing(path));
}

TEST(TarTest, PaxSizeRecordIsHonoured) {
  const std::string path = testing::MakeTempDir() + "/paxsize.tar";
  ASSERT_TRUE(testing::RunPythonScript("tar_check.py", {"write-pax-size", path}).ok());
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ(bytes->substr(2 * 512 + 124, 12), std::string("00000000000\0", 12));
  const Listing ours = OurListing(path);
  ASSERT_EQ(ours.size(), 2u);
  EXPECT_EQ(std::get<1>(ours[0]), 1500u);  // from `size=`; the header says 0
  EXPECT_EQ(std::get<0>(ours[1]), "000000001.txt");
  EXPECT_EQ(ours, PythonListing(path));
}

TEST(TarTest, ArchiveWithoutEndBlocksKeepsItsLastSample) {
  const std::string path = testing::MakeTempDir() + "/noend.tar";
  ASSERT_TRUE(testing::RunPythonScript("tar_check.py", {"write-no-end", path}).ok());
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ(bytes->size(), 8u * 512);  // four headers and four data blocks, nothing after
  EXPECT_EQ(OurListing(path), PythonListing(path));
  std::vector<ShardSample> samples;
  ASSERT_TRUE(
      ReadShardSamples(path, [&](ShardSample&& s) { samples.push_back(std::move(s)); }).ok());
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1].key, "000000002");
  EXPECT_EQ(samples[1].fields["txt"], "last caption");
}

// A header claiming 8 GiB in a 2 KiB file is refused before anything is allocated
// for it: DataLoss, at once, and the peak RSS does not move.
TEST(TarTest, HugeClaimedSizeFailsFastWithoutAllocating) {
  const std::string dir = testing::MakeTempDir();
  auto writer = TarWriter::Create(dir + "/small.tar");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer->Add("000000001.txt", "tiny").ok());
  ASSERT_TRUE(writer->Close().ok());
  auto small = ReadFile(dir + "/small.tar");
  ASSERT_TRUE(small.ok());
  std::string base256(12, '\0');  // GNU base-256: 0x80, then 2^33 big-endian
  base256[0] = static_cast<char>(0x80);
  base256[7] = 0x02;
  const std::vector<std::pair<std::string, std::string>> claims = {
      {"base256_8GiB", base256},
      {"octal_8GiB", std::string("77777777777\0", 12)},
      {"octal_12_digits", "777777777777"},  // no terminator: 64 GiB
  };
  for (const auto& [name, field] : claims) {
    std::string archive = *small;
    SetSizeField(&archive, 0, field);
    const std::string path = dir + "/" + name + ".tar";
    std::ofstream(path, std::ios::binary) << archive;
    const int64_t peak_before = PeakRssBytes();
    const auto start = std::chrono::steady_clock::now();
    absl::Status status;
    EXPECT_TRUE(ReadAll(path, &status).empty()) << name;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << name << ": " << status;
    EXPECT_NE(status.message().find("past the end of the file"), std::string::npos) << status;
    // Reading 2 KiB takes microseconds; allocating and filling 8 GiB takes seconds
    // (or fails). 64 MiB of slack covers allocator and sanitizer noise.
    EXPECT_LT(seconds, 1.0) << name;
    EXPECT_LT(PeakRssBytes() - peak_before, int64_t{64} << 20) << name;
  }
}

// Builds "pax header + records + one regular member" with the given records.
std::string PaxArchive(const std::string& records, const std::string& dir) {
  auto writer = TarWriter::Create(dir + "/member.tar");
  EXPECT_TRUE(writer.ok());
  EXPECT_TRUE(writer->Add("000000001.txt", "payload").ok());
  EXPECT_TRUE(writer->Close().ok());
  const std::string member = *ReadFile(dir + "/member.tar");
  std::string header = member.substr(0, 512);
  header[156] = 'x';
  std::string archive = header;
  SetSizeField(&archive, 0, absl::StrFormat("%011o", records.size()) + std::string(1, '\0'));
  archive += records + std::string((512 - records.size() % 512) % 512, '\0');
  return archive + member;
}

TEST(TarTest, GarbagePaxRecordsAreDataLoss) {
  const std::string dir = testing::MakeTempDir();
  // Well-formed records are honoured (the control for the cases below).
  const std::string good = PaxArchive("20 path=renamed.txt\n", dir);
  std::ofstream(dir + "/good.tar", std::ios::binary) << good;
  absl::Status status;
  auto members = ReadAll(dir + "/good.tar", &status);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].name, "renamed.txt");
  EXPECT_EQ(OurListing(dir + "/good.tar"), PythonListing(dir + "/good.tar"));

  const std::vector<std::string> garbage = {
      "garbage",                         // no length
      "99 path=x\n",                     // length past the records
      "5 path=x\n",                      // length inside the record
      "-5 path\n",                       // negative length
      "0 \n",                            // zero length
      "12 size=abc\n",                   // size not a number
      "11 size=-1\n",                    // negative size
      "29 size=18446744073709551616\n",  // 2^64
      "14 size=99999\n",                 // past the end of the file
      "8 nokey\n",                       // no '='
      "7 =abc\n",                        // empty key
      std::string("12 path=a\0b\n\xff\xfe", 15),
  };
  for (size_t i = 0; i < garbage.size(); ++i) {
    const std::string path = absl::StrCat(dir, "/garbage", i, ".tar");
    std::ofstream(path, std::ios::binary) << PaxArchive(garbage[i], dir);
    members = ReadAll(path, &status);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << i << ": " << status;
    EXPECT_TRUE(members.empty()) << i;
  }
}

TEST(TarTest, TruncatedArchiveKeepsEarlierMembersAndReportsDataLoss) {
  const std::string dir = testing::MakeTempDir();
  auto writer = TarWriter::Create(dir + "/full.tar");
  ASSERT_TRUE(writer.ok());
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(writer->Add(std::to_string(i) + ".txt", std::string(700, 'a' + i)).ok());
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
