#include "train/checkpoint_writer.h"

#include <chrono>

#include "core/status.h"

namespace clipscale {

CheckpointWriter::CheckpointWriter(CheckpointWriterOptions options)
    : options_(std::move(options)), thread_([this] { Loop(); }) {}

CheckpointWriter::~CheckpointWriter() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !pending_; });
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

double CheckpointWriter::Wait() {
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !pending_; });
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void CheckpointWriter::Start(bool async) {
  if (!async) {
    Write();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = true;
  }
  cv_.notify_all();
}

absl::Status CheckpointWriter::Prepare(int64_t step) {
  dir_.reset();
  parts_.clear();
  auto dir = CheckpointDirWriter::Create(options_.root, step);
  if (!dir.ok()) return dir.status();
  dir_.emplace(std::move(*dir));
  return absl::OkStatus();
}

void CheckpointWriter::Abandon() {
  dir_.reset();  // removes the temporary folder
  parts_.clear();
}

std::optional<CheckpointWriter::Outcome> CheckpointWriter::TakeOutcome() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(outcome_, std::nullopt);
}

absl::StatusOr<std::string> CheckpointWriter::WriteAndCommit() {
  if (!dir_) return absl::FailedPreconditionError("no checkpoint folder prepared");
  CheckpointDirWriter writer = std::move(*dir_);
  dir_.reset();
  absl::Status written = WriteSnapshotFiles(snapshot_, writer, options_.pause_ms);
  if (options_.job && options_.job->supervised()) {
    std::vector<ManifestEntry> files = writer.Release();
    files.insert(files.end(), parts_.begin(), parts_.end());
    // A failed write is a NO vote: the coordinator drops the save at once.
    return options_.job->Vote(snapshot_.state.step(), files,
                              written.ok() ? "" : std::string(written.message()), /*wait=*/true);
  }
  RETURN_IF_ERROR(written);
  for (const ManifestEntry& part : parts_) RETURN_IF_ERROR(writer.AddEntry(part));
  ASSIGN_OR_RETURN(std::string dir, writer.Commit());
  PruneCheckpoints(options_.root, options_.keep, options_.keep_every);
  return dir;
}

void CheckpointWriter::Write() {
  const auto start = std::chrono::steady_clock::now();
  auto dir = WriteAndCommit();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::lock_guard<std::mutex> lock(mu_);
  outcome_ = Outcome{snapshot_.state.step(), std::move(dir), seconds};
}

void CheckpointWriter::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return pending_ || stop_; });
    if (stop_ && !pending_) return;
    lock.unlock();
    Write();
    lock.lock();
    pending_ = false;
    cv_.notify_all();
  }
}

}  // namespace clipscale
