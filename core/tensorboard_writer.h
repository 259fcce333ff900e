// Writes TensorBoard event files directly (no TensorFlow): a TFRecord stream of
// serialized tensorflow.Event protos, the first carrying "brain.Event:2".
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/append_file.h"
#include "core/metrics.h"

namespace clipscale {

class TensorBoardWriter : public MetricsSink {
 public:
  // Creates `log_dir` if needed and a new file in it named like TensorFlow's,
  // events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n>, where n counts the
  // writers this process has opened, so two never share a file.
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> Create(const std::string& log_dir,
                                                                   const FlushPolicy& policy = {});
  ~TensorBoardWriter() override;  // flushes; an error is logged

  // One Event per call, with a Summary.Value holding simple_value: TensorBoard
  // stores scalars as float32, so `value` is rounded to float (beyond float's
  // range it becomes +-inf). Not thread-safe (MetricsLogger is).
  void Scalar(const std::string& tag, double value, int64_t step) override;
  absl::Status Flush() override;

  const std::string& path() const { return file_->path(); }

 private:
  explicit TensorBoardWriter(std::unique_ptr<AppendFile> file) : file_(std::move(file)) {}

  std::unique_ptr<AppendFile> file_;
};

// `value` as the float32 TensorBoard stores: nearest float, +-inf past float's
// range (where a plain cast would be undefined behaviour), NaN kept.
float ToTensorBoardFloat(double value);

}  // namespace clipscale
