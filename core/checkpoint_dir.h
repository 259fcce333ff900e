// The on-disk protocol of checkpoints, without LibTorch: one folder per step
// under a root (`<output>/checkpoints/step_000012000/`), written as
// `step_….tmp/`, every file and the folder fsynced, renamed into place, the root
// fsynced, and the `latest` pointer file replaced atomically last. A manifest
// (`manifest.json`) lists every file with its size and CRC32C, and carries a
// CRC of its own; a folder is a checkpoint only if it verifies against it.
// What goes into the files is train/'s business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/file_util.h"

namespace clipscale {

inline constexpr char kManifestName[] = "manifest.json";
inline constexpr char kLatestName[] = "latest";

// "step_000012000" (9 digits, so names sort as steps).
std::string CheckpointDirName(int64_t step);
// The step of a committed folder name, nullopt for anything else (".tmp" too).
std::optional<int64_t> ParseCheckpointDirName(const std::string& name);

struct ManifestEntry {
  std::string name;  // relative to the checkpoint folder, no '/'
  uint64_t size = 0;
  uint32_t crc32c = 0;
};
struct CheckpointManifest {
  int64_t step = 0;
  std::vector<ManifestEntry> files;
};

// Writes one checkpoint: files go into `<root>/step_N.tmp/` (a stale one from a
// crashed save is removed first); Commit() writes the manifest, fsyncs, renames
// the folder into place (replacing a folder of that step that `latest` does not
// point at), fsyncs the root and points `latest` at it. Destroyed uncommitted
// (or after a failed Commit) the temporary folder is removed and nothing a
// resume reads has changed.
class CheckpointDirWriter {
 public:
  static absl::StatusOr<CheckpointDirWriter> Create(const std::string& root, int64_t step);
  // The temporary folder of `step` that someone else Created (two-phase
  // commits: each rank adds its part, the committer adds their entries). Not
  // its owner: destroyed uncommitted, it removes nothing.
  static absl::StatusOr<CheckpointDirWriter> Open(const std::string& root, int64_t step);
  CheckpointDirWriter(CheckpointDirWriter&& other) noexcept;
  CheckpointDirWriter& operator=(CheckpointDirWriter&&) = delete;
  ~CheckpointDirWriter();

  // Writes and fsyncs `name` from `pieces`, recording size and checksum.
  absl::Status AddFile(const std::string& name, const std::vector<ByteSpan>& pieces);
  absl::Status AddFile(const std::string& name, const std::string& content) {
    return AddFile(name, std::vector<ByteSpan>{{content.data(), content.size()}});
  }
  // Records `name`, a file someone else wrote (and fsynced) into tmp_dir().
  absl::Status AdoptFile(const std::string& name);
  // Records `entry` as checksummed by whoever wrote the file; the size on disk
  // must match (a missing or short part is an error, not a commit).
  absl::Status AddEntry(const ManifestEntry& entry);
  // Leaves the folder uncommitted for another committer and returns what was
  // written; this object then removes nothing.
  std::vector<ManifestEntry> Release();
  const std::vector<ManifestEntry>& files() const { return files_; }
  // Returns the committed folder's path.
  absl::StatusOr<std::string> Commit();

  const std::string& tmp_dir() const { return tmp_; }

 private:
  CheckpointDirWriter(std::string root, int64_t step, std::string tmp)
      : root_(std::move(root)), step_(step), tmp_(std::move(tmp)) {}
  std::string root_;
  int64_t step_ = 0;
  std::string tmp_;
  std::vector<ManifestEntry> files_;
  bool done_ = false;
};

// Reads the manifest and checks every listed file's size and CRC32C, and that
// the folder holds no unlisted file. Errors name the folder and the file.
absl::StatusOr<CheckpointManifest> VerifyCheckpoint(const std::string& dir);

// Committed checkpoint folders under `root`, newest step first (.tmp ignored).
std::vector<int64_t> ListCheckpoints(const std::string& root);
// The step `latest` points at; nullopt when there is no pointer (or it is unreadable).
std::optional<int64_t> ReadLatest(const std::string& root);

// Removes committed folders beyond the newest `keep` (0: keep all), sparing
// every step that is a multiple of `keep_every` (> 0) and the one `latest`
// points at; and stale `.tmp` folders (call it when no save is in flight).
void PruneCheckpoints(const std::string& root, int64_t keep, int64_t keep_every);

}  // namespace clipscale
