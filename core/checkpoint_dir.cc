#include "core/checkpoint_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/crc32c.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace clipscale {
namespace {

namespace fs = std::filesystem;

constexpr char kFormat[] = "clipscale-checkpoint";
constexpr int kFormatVersion = 1;
constexpr char kTmpSuffix[] = ".tmp";

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// The manifest's JSON without its own checksum, in a fixed key order, so that
// writer and reader checksum the same bytes.
std::string ManifestBody(const CheckpointManifest& m) {
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  for (const auto& f : m.files) {
    files.push_back({{"name", f.name}, {"size", f.size}, {"crc32c", f.crc32c}});
  }
  nlohmann::ordered_json j = {
      {"format", kFormat}, {"version", kFormatVersion}, {"step", m.step}, {"files", files}};
  return j.dump();
}

// A file a manifest may list: a plain name inside the folder, not the manifest.
bool IsPartName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != ".." &&
         name != kManifestName;
}

absl::StatusOr<CheckpointManifest> ParseManifest(const std::string& text, const std::string& path) {
  auto bad = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid checkpoint manifest (", why, ")"));
  };
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return bad("not JSON");
  if (j.value("format", "") != kFormat) return bad("format is not \"clipscale-checkpoint\"");
  if (!j.contains("version") || !j["version"].is_number_integer() ||
      j["version"].get<int>() != kFormatVersion) {
    return bad(absl::StrCat("version is not ", kFormatVersion));
  }
  if (!j.contains("step") || !j["step"].is_number_integer()) return bad("no step");
  if (!j.contains("files") || !j["files"].is_array()) return bad("no file list");
  if (!j.contains("crc32c") || !j["crc32c"].is_number_unsigned()) return bad("no checksum");
  CheckpointManifest m;
  m.step = j["step"].get<int64_t>();
  for (const auto& f : j["files"]) {
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string() || !f.contains("size") ||
        !f["size"].is_number_unsigned() || !f.contains("crc32c") ||
        !f["crc32c"].is_number_unsigned()) {
      return bad("malformed file entry");
    }
    ManifestEntry e{f["name"].get<std::string>(), f["size"].get<uint64_t>(),
                    f["crc32c"].get<uint32_t>()};
    if (!IsPartName(e.name)) return bad(absl::StrCat("file name \"", e.name, "\""));
    m.files.push_back(std::move(e));
  }
  if (Crc32c(ManifestBody(m)) != j["crc32c"].get<uint32_t>()) {
    return bad("its checksum does not match its content");
  }
  return m;
}

absl::StatusOr<uint32_t> FileCrc32c(const std::string& path, uint64_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::vector<char> buffer(1 << 20);
  uint32_t crc = 0;
  *size = 0;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status error = ErrnoError("cannot read", path);
      ::close(fd);
      return error;
    }
    if (n == 0) break;
    crc = Crc32cExtend(crc, buffer.data(), static_cast<size_t>(n));
    *size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return crc;
}

}  // namespace

std::string CheckpointDirName(int64_t step) { return absl::StrFormat("step_%09d", step); }

std::optional<int64_t> ParseCheckpointDirName(const std::string& name) {
  if (name.size() < 6 || name.rfind("step_", 0) != 0) return std::nullopt;
  const std::string digits = name.substr(5);
  if (digits.size() < 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) {
    return std::nullopt;
  }
  int64_t step = 0;
  if (!absl::SimpleAtoi(digits, &step)) return std::nullopt;
  return step;
}

absl::StatusOr<CheckpointDirWriter> CheckpointDirWriter::Create(const std::string& root,
                                                                int64_t step) {
  std::error_code error;
  fs::create_directories(root, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", root, ": ", error.message()));
  }
  const std::string tmp = (fs::path(root) / (CheckpointDirName(step) + kTmpSuffix)).string();
  fs::remove_all(tmp, error);  // a crashed save of the same step
  if (!fs::create_directory(tmp, error) || error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", tmp, ": ", error ? error.message() : "exists"));
  }
  return CheckpointDirWriter(root, step, tmp);
}

absl::StatusOr<CheckpointDirWriter> CheckpointDirWriter::Open(const std::string& root,
                                                              int64_t step) {
  const std::string tmp = (fs::path(root) / (CheckpointDirName(step) + kTmpSuffix)).string();
  std::error_code error;
  if (!fs::is_directory(tmp, error)) {
    return absl::FailedPreconditionError(absl::StrCat(tmp, ": no such checkpoint folder being written"));
  }
  CheckpointDirWriter writer(root, step, tmp);
  writer.done_ = true;  // not the owner
  return writer;
}

absl::Status CheckpointDirWriter::AddEntry(const ManifestEntry& entry) {
  if (!IsPartName(entry.name)) {
    return absl::InvalidArgumentError(absl::StrCat("bad checkpoint file name '", entry.name, "'"));
  }
  for (const ManifestEntry& f : files_) {
    if (f.name == entry.name) {
      return absl::InvalidArgumentError(absl::StrCat(entry.name, ": listed twice"));
    }
  }
  const std::string path = (fs::path(tmp_) / entry.name).string();
  std::error_code error;
  const uintmax_t size = fs::file_size(path, error);
  if (error) return absl::DataLossError(absl::StrCat(path, ": ", error.message()));
  if (size != entry.size) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", size, " bytes on disk, ", entry.size, " announced"));
  }
  files_.push_back(entry);
  return absl::OkStatus();
}

std::vector<ManifestEntry> CheckpointDirWriter::Release() {
  done_ = true;
  return files_;
}

CheckpointDirWriter::CheckpointDirWriter(CheckpointDirWriter&& other) noexcept
    : root_(std::move(other.root_)),
      step_(other.step_),
      tmp_(std::move(other.tmp_)),
      files_(std::move(other.files_)),
      done_(std::exchange(other.done_, true)) {}

CheckpointDirWriter::~CheckpointDirWriter() {
  if (done_) return;
  std::error_code ignored;
  fs::remove_all(tmp_, ignored);
}

absl::Status CheckpointDirWriter::AddFile(const std::string& name,
                                          const std::vector<ByteSpan>& pieces) {
  ASSIGN_OR_RETURN(AtomicFileWriter file, AtomicFileWriter::Create((fs::path(tmp_) / name).string()));
  ManifestEntry entry{name, 0, 0};
  for (const ByteSpan& piece : pieces) {
    RETURN_IF_ERROR(file.Append(piece.data, piece.size));
    entry.crc32c = Crc32cExtend(entry.crc32c, piece.data, piece.size);
  }
  entry.size = file.written();
  RETURN_IF_ERROR(file.Commit());
  files_.push_back(std::move(entry));
  return absl::OkStatus();
}

absl::Status CheckpointDirWriter::AdoptFile(const std::string& name) {
  ManifestEntry entry{name, 0, 0};
  ASSIGN_OR_RETURN(entry.crc32c, FileCrc32c((fs::path(tmp_) / name).string(), &entry.size));
  files_.push_back(std::move(entry));
  return absl::OkStatus();
}

absl::StatusOr<std::string> CheckpointDirWriter::Commit() {
  CheckpointManifest manifest{step_, files_};
  const std::string body = ManifestBody(manifest);
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(body);
  j["crc32c"] = Crc32c(body);
  const std::string text = j.dump(1) + "\n";
  const std::string manifest_path = (fs::path(tmp_) / kManifestName).string();
  RETURN_IF_ERROR(WriteFileAtomically(manifest_path, text));
  RETURN_IF_ERROR(FsyncDirectory(tmp_));
  const std::string name = CheckpointDirName(step_);
  const std::string final_dir = (fs::path(root_) / name).string();
  std::error_code error;
  if (fs::exists(final_dir, error)) {
    // A folder of this step that a resume skipped (corrupt, or newer than
    // `latest`): replaced. Should `latest` name it (it was corrupt) and the
    // process die before the rename, a resume falls back to an older one.
    fs::remove_all(final_dir, error);
    if (error) {
      return absl::InternalError(absl::StrCat("cannot replace ", final_dir, ": ", error.message()));
    }
  }
  if (::rename(tmp_.c_str(), final_dir.c_str()) != 0) return ErrnoError("cannot rename", tmp_);
  done_ = true;
  RETURN_IF_ERROR(FsyncDirectory(root_));
  RETURN_IF_ERROR(WriteFileAtomically((fs::path(root_) / kLatestName).string(), name + "\n"));
  return final_dir;
}

absl::StatusOr<CheckpointManifest> VerifyCheckpoint(const std::string& dir) {
  const std::string manifest_path = (fs::path(dir) / kManifestName).string();
  auto text = ReadFile(manifest_path);
  if (!text.ok()) {
    return absl::DataLossError(absl::StrCat(manifest_path, ": missing (", text.status().message(),
                                            "): not a complete checkpoint"));
  }
  ASSIGN_OR_RETURN(CheckpointManifest manifest, ParseManifest(*text, manifest_path));
  const std::string folder = fs::path(dir).lexically_normal().filename().string();
  const auto named_step = ParseCheckpointDirName(folder);
  if (named_step && *named_step != manifest.step) {
    return absl::DataLossError(absl::StrCat(manifest_path, ": says step ", manifest.step,
                                            ", the folder's name says ", *named_step));
  }
  std::set<std::string> listed = {kManifestName};
  for (const ManifestEntry& f : manifest.files) {
    listed.insert(f.name);
    const std::string path = (fs::path(dir) / f.name).string();
    uint64_t size = 0;
    auto crc = FileCrc32c(path, &size);
    if (!crc.ok()) {
      return absl::DataLossError(absl::StrCat(path, ": listed in the manifest but unreadable (",
                                              crc.status().message(), ")"));
    }
    if (size != f.size) {
      return absl::DataLossError(absl::StrCat(path, ": ", size, " bytes, the manifest says ",
                                              f.size, " (truncated or overwritten)"));
    }
    if (*crc != f.crc32c) {
      return absl::DataLossError(absl::StrFormat(
          "%s: CRC32C %08x, the manifest says %08x (corrupt)", path, *crc, f.crc32c));
    }
  }
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (!listed.count(name)) {
      return absl::DataLossError(
          absl::StrCat(entry.path().string(), ": not listed in the manifest"));
    }
  }
  if (error) return absl::DataLossError(absl::StrCat("cannot list ", dir, ": ", error.message()));
  return manifest;
}

std::vector<int64_t> ListCheckpoints(const std::string& root) {
  std::vector<int64_t> steps;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    if (!entry.is_directory(error)) continue;
    if (auto step = ParseCheckpointDirName(entry.path().filename().string())) {
      steps.push_back(*step);
    }
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

std::optional<int64_t> ReadLatest(const std::string& root) {
  auto text = ReadFile((fs::path(root) / kLatestName).string());
  if (!text.ok()) return std::nullopt;
  std::string name = *text;
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  return ParseCheckpointDirName(name);
}

void PruneCheckpoints(const std::string& root, int64_t keep, int64_t keep_every) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, kTmpSuffix) == 0 &&
        ParseCheckpointDirName(name.substr(0, name.size() - 4))) {
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
    }
  }
  if (keep <= 0) return;
  const std::optional<int64_t> latest = ReadLatest(root);
  int64_t kept = 0;
  for (int64_t step : ListCheckpoints(root)) {
    const bool permanent = keep_every > 0 && step % keep_every == 0;
    if (latest && step > *latest) continue;  // not committed by the pointer yet
    if (kept++ < keep || permanent || (latest && step == *latest)) continue;
    std::error_code ignored;
    fs::remove_all(fs::path(root) / CheckpointDirName(step), ignored);
  }
}

}  // namespace clipscale
