// Where training scalars go: a MetricsSink interface, a metrics.jsonl writer,
// a fan-out logger, and the one-line progress text printed to the console.
// The TensorBoard sink is in core/tensorboard_writer.h.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/append_file.h"

namespace clipscale {

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  // Records `value` under `tag` (e.g. "train/loss") at `step`. Never fails:
  // I/O errors are kept and returned by the next Flush().
  virtual void Scalar(const std::string& tag, double value, int64_t step) = 0;
  // Writes everything recorded so far; returns the first I/O error seen.
  virtual absl::Status Flush() = 0;
};

// metrics.jsonl: one JSON object per step, {"step": 10, "time": 1.7e9, "tag":
// value, ...}, keys in first-logged order. Scalars of one step are grouped into
// one line, written when a scalar of another step arrives or on Flush(), so
// log each step's scalars together. A tag logged twice in a step keeps the
// last value; NaN and infinities are written as null (JSON has no such
// numbers); "time" is Unix seconds of the step's first scalar. The tags "step"
// and "time" are reserved. Not thread-safe (MetricsLogger is).
class JsonlWriter : public MetricsSink {
 public:
  // Appends to `path` (a resumed run continues the same file).
  static absl::StatusOr<std::unique_ptr<JsonlWriter>> Create(const std::string& path,
                                                             const FlushPolicy& policy = {});
  ~JsonlWriter() override;  // flushes; an error is logged

  void Scalar(const std::string& tag, double value, int64_t step) override;
  absl::Status Flush() override;
  const std::string& path() const { return file_->path(); }

 private:
  explicit JsonlWriter(std::unique_ptr<AppendFile> file);
  void EmitPendingLine();

  std::unique_ptr<AppendFile> file_;
  struct Pending;
  std::unique_ptr<Pending> pending_;
};

// Sends every scalar to each of its sinks. Safe to call from several threads.
class MetricsLogger : public MetricsSink {
 public:
  void AddSink(std::unique_ptr<MetricsSink> sink);
  void Scalar(const std::string& tag, double value, int64_t step) override;
  // Flushes every sink, even after one fails; returns the first error.
  absl::Status Flush() override;

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<MetricsSink>> sinks_;
};

struct MetricsLoggerOptions {
  bool tensorboard = true;  // <log_dir>/events.out.tfevents.*
  bool jsonl = true;        // <log_dir>/metrics.jsonl
  FlushPolicy flush;
};

// The usual logger of a run: the sinks `options` asks for, in `log_dir`
// (created if missing).
absl::StatusOr<std::unique_ptr<MetricsLogger>> OpenMetricsLogger(
    const std::string& log_dir, const MetricsLoggerOptions& options = {});

// "step 120/1000  loss 3.412  812.4 samples/s  ETA 00:01:05". A total <= 0
// drops "/total"; an ETA that is negative or not finite prints as --:--:--.
std::string FormatProgress(int64_t step, int64_t total, double loss, double samples_per_sec,
                           double eta_seconds);

// Whether `stream` is a terminal (so a progress line may be redrawn with '\r').
bool IsTerminal(FILE* stream);

}  // namespace clipscale
