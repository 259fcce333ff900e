// The checkpoint folder protocol: what a commit leaves, what an interrupted
// save leaves (nothing a resume reads), and that every kind of damage to a
// committed folder is caught by VerifyCheckpoint, naming the file.
#include "core/checkpoint_dir.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/file_util.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

namespace fs = std::filesystem;

std::string Commit(const std::string& root, int64_t step) {
  auto writer = CheckpointDirWriter::Create(root, step);
  EXPECT_TRUE(writer.ok()) << writer.status();
  EXPECT_TRUE(writer->AddFile("model.safetensors", std::string(1000 + step, 'm')).ok());
  EXPECT_TRUE(writer->AddFile("state.pb", "state of step " + std::to_string(step)).ok());
  auto dir = writer->Commit();
  EXPECT_TRUE(dir.ok()) << dir.status();
  return dir.ok() ? *dir : "";
}

std::string Message(const absl::Status& status) { return std::string(status.message()); }

TEST(CheckpointDir, NamesSortAsSteps) {
  EXPECT_EQ(CheckpointDirName(12000), "step_000012000");
  EXPECT_EQ(ParseCheckpointDirName("step_000012000"), 12000);
  EXPECT_EQ(ParseCheckpointDirName("step_1234567890"), 1234567890);
  for (const char* bad : {"step_000012000.tmp", "step_12", "latest", "step_00001200x", ""}) {
    EXPECT_FALSE(ParseCheckpointDirName(bad).has_value()) << bad;
  }
}

TEST(CheckpointDir, CommitWritesManifestAndLatestLast) {
  const std::string root = testing::MakeTempDir() + "/checkpoints";
  const std::string dir = Commit(root, 7);
  EXPECT_EQ(dir, root + "/step_000000007");
  EXPECT_FALSE(fs::exists(dir + ".tmp"));
  EXPECT_EQ(ReadLatest(root), 7);
  auto manifest = VerifyCheckpoint(dir);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->step, 7);
  ASSERT_EQ(manifest->files.size(), 2u);
  EXPECT_EQ(manifest->files[0].name, "model.safetensors");
  EXPECT_EQ(manifest->files[0].size, 1007u);
  Commit(root, 12);
  EXPECT_EQ(ReadLatest(root), 12);
  EXPECT_EQ(ListCheckpoints(root), (std::vector<int64_t>{12, 7}));
}

TEST(CheckpointDir, UncommittedSaveLeavesOnlyItsTemporaryFolder) {
  const std::string root = testing::MakeTempDir() + "/checkpoints";
  Commit(root, 5);
  {
    auto writer = CheckpointDirWriter::Create(root, 10);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->AddFile("model.safetensors", "half").ok());
    EXPECT_TRUE(fs::exists(root + "/step_000000010.tmp/model.safetensors"));
    EXPECT_EQ(ListCheckpoints(root), std::vector<int64_t>{5});  // .tmp is not a checkpoint
  }  // destroyed uncommitted: a failed save
  EXPECT_FALSE(fs::exists(root + "/step_000000010.tmp"));
  EXPECT_EQ(ReadLatest(root), 5);
  // A crashed process leaves its .tmp behind: the next save of that step and
  // pruning remove it, a resume never reads it.
  fs::create_directories(root + "/step_000000010.tmp");
  std::ofstream(root + "/step_000000010.tmp/model.safetensors") << "partial";
  EXPECT_EQ(ListCheckpoints(root), std::vector<int64_t>{5});
  PruneCheckpoints(root, 2, 0);
  EXPECT_FALSE(fs::exists(root + "/step_000000010.tmp"));
  EXPECT_TRUE(VerifyCheckpoint(root + "/step_000000005").ok());
}

class CheckpointDamage : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::MakeTempDir() + "/checkpoints";
    dir_ = Commit(root_, 3);
    ASSERT_TRUE(VerifyCheckpoint(dir_).ok());
  }
  void ExpectRefused(const std::string& names) {
    auto verified = VerifyCheckpoint(dir_);
    ASSERT_FALSE(verified.ok());
    EXPECT_EQ(verified.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(Message(verified.status()).find(names), std::string::npos) << verified.status();
  }
  std::string root_, dir_;
};

TEST_F(CheckpointDamage, TruncatedFile) {
  fs::resize_file(dir_ + "/model.safetensors", 500);
  ExpectRefused("model.safetensors: 500 bytes, the manifest says 1003");
}

TEST_F(CheckpointDamage, OneFlippedByte) {
  std::fstream f(dir_ + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(321);
  f.put('x');
  f.close();
  ExpectRefused("model.safetensors: CRC32C");
}

TEST_F(CheckpointDamage, MissingManifest) {
  fs::remove(dir_ + "/manifest.json");
  ExpectRefused("manifest.json: missing");
}

TEST_F(CheckpointDamage, MissingFile) {
  fs::remove(dir_ + "/state.pb");
  ExpectRefused("state.pb: listed in the manifest but unreadable");
}

TEST_F(CheckpointDamage, UnlistedFile) {
  std::ofstream(dir_ + "/extra.bin") << "?";
  ExpectRefused("extra.bin: not listed in the manifest");
}

TEST_F(CheckpointDamage, EditedManifest) {
  auto text = ReadFile(dir_ + "/manifest.json");
  ASSERT_TRUE(text.ok());
  std::string edited = *text;
  const size_t at = edited.find("1003");
  ASSERT_NE(at, std::string::npos);
  edited.replace(at, 4, "1004");  // still valid JSON, the size of a file changed
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/manifest.json", edited).ok());
  ExpectRefused("its checksum does not match");
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/manifest.json", text->substr(0, text->size() / 2)).ok());
  ExpectRefused("not JSON");
}

TEST_F(CheckpointDamage, FolderRenamedToAnotherStep) {
  fs::rename(dir_, root_ + "/step_000000004");
  dir_ = root_ + "/step_000000004";
  ExpectRefused("says step 3, the folder's name says 4");
}

TEST(CheckpointDir, PruneKeepsNewestPermanentAndLatest) {
  const std::string root = testing::MakeTempDir() + "/checkpoints";
  for (int64_t step : {10, 20, 30, 40, 50, 60}) Commit(root, step);
  PruneCheckpoints(root, 2, 20);  // the newest two, and multiples of 20 for good
  EXPECT_EQ(ListCheckpoints(root), (std::vector<int64_t>{60, 50, 40, 20}));
  PruneCheckpoints(root, 0, 0);  // 0 keeps all
  EXPECT_EQ(ListCheckpoints(root).size(), 4u);
}

TEST(CheckpointDir, AFolderPastLatestIsReplacedBySavingItsStepAgain) {
  const std::string root = testing::MakeTempDir() + "/checkpoints";
  Commit(root, 4);
  const std::string stale = Commit(root, 8);
  ASSERT_TRUE(WriteFileAtomically(root + "/latest", "step_000000004\n").ok());
  std::ofstream(stale + "/junk") << "from a crashed run";
  const std::string again = Commit(root, 8);
  EXPECT_EQ(again, stale);
  EXPECT_TRUE(VerifyCheckpoint(again).ok());
  EXPECT_EQ(ReadLatest(root), 8);
}

}  // namespace
}  // namespace clipscale
