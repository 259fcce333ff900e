#include "train/checkpoint_writer.h"

#include <chrono>

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

std::optional<CheckpointWriter::Outcome> CheckpointWriter::TakeOutcome() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(outcome_, std::nullopt);
}

void CheckpointWriter::Write() {
  const auto start = std::chrono::steady_clock::now();
  auto dir = WriteCheckpoint(options_.root, snapshot_, options_.keep, options_.keep_every,
                             options_.pause_ms);
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
