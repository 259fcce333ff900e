#include "core/metrics.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/logging.h"
#include "core/status.h"
#include "core/tensorboard_writer.h"
#include "nlohmann/json.hpp"

namespace clipscale {
namespace {

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--:--";
  const int64_t total = static_cast<int64_t>(std::llround(std::min(seconds, 1e15)));
  return absl::StrFormat("%02d:%02d:%02d", total / 3600, (total / 60) % 60, total % 60);
}

}  // namespace

// The line being gathered: ordered_json keeps "step" and "time" first and the
// tags in the order they were logged.
struct JsonlWriter::Pending {
  bool active = false;
  int64_t step = 0;
  nlohmann::ordered_json line;
};

absl::StatusOr<std::unique_ptr<JsonlWriter>> JsonlWriter::Create(const std::string& path,
                                                                 const FlushPolicy& policy) {
  ASSIGN_OR_RETURN(auto file, AppendFile::Open(path, /*exclusive=*/false, policy));
  return std::unique_ptr<JsonlWriter>(new JsonlWriter(std::move(file)));
}

JsonlWriter::JsonlWriter(std::unique_ptr<AppendFile> file)
    : file_(std::move(file)), pending_(std::make_unique<Pending>()) {}

JsonlWriter::~JsonlWriter() {
  absl::Status status = Flush();
  if (!status.ok()) LogError("metrics were lost: ", std::string(status.message()));
}

void JsonlWriter::Scalar(const std::string& tag, double value, int64_t step) {
  CS_CHECK_MSG(tag != "step" && tag != "time", "metric tag '", tag, "' is reserved in metrics.jsonl");
  if (pending_->active && pending_->step != step) EmitPendingLine();
  if (!pending_->active) {
    pending_->active = true;
    pending_->step = step;
    pending_->line = nlohmann::ordered_json::object();
    pending_->line["step"] = step;
    pending_->line["time"] = UnixSeconds();
  }
  // nlohmann would write NaN/inf as null anyway; say so explicitly.
  if (std::isfinite(value)) {
    pending_->line[tag] = value;
  } else {
    pending_->line[tag] = nullptr;
  }
}

void JsonlWriter::EmitPendingLine() {
  if (!pending_->active) return;
  // Invalid UTF-8 in a tag becomes U+FFFD rather than an exception mid-training.
  std::string text =
      pending_->line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  text.push_back('\n');
  file_->Append(text);
  pending_->active = false;
}

absl::Status JsonlWriter::Flush() {
  EmitPendingLine();
  return file_->Flush();
}

void MetricsLogger::AddSink(std::unique_ptr<MetricsSink> sink) {
  std::lock_guard<std::mutex> lock(mutex_);
  sinks_.push_back(std::move(sink));
}

void MetricsLogger::Scalar(const std::string& tag, double value, int64_t step) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& sink : sinks_) sink->Scalar(tag, value, step);
}

absl::Status MetricsLogger::Flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  absl::Status first_error;
  for (auto& sink : sinks_) first_error.Update(sink->Flush());
  return first_error;
}

absl::StatusOr<std::unique_ptr<MetricsLogger>> OpenMetricsLogger(
    const std::string& log_dir, const MetricsLoggerOptions& options) {
  std::error_code error;
  std::filesystem::create_directories(log_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create log dir ", log_dir, ": ", error.message()));
  }
  auto logger = std::make_unique<MetricsLogger>();
  if (options.tensorboard) {
    ASSIGN_OR_RETURN(auto writer, TensorBoardWriter::Create(log_dir, options.flush));
    logger->AddSink(std::move(writer));
  }
  if (options.jsonl) {
    const std::string path = (std::filesystem::path(log_dir) / "metrics.jsonl").string();
    ASSIGN_OR_RETURN(auto writer, JsonlWriter::Create(path, options.flush));
    logger->AddSink(std::move(writer));
  }
  return logger;
}

std::string FormatProgress(int64_t step, int64_t total, double loss, double samples_per_sec,
                           double eta_seconds) {
  std::string text =
      total > 0 ? absl::StrFormat("step %d/%d", step, total) : absl::StrFormat("step %d", step);
  absl::StrAppendFormat(&text, "  loss %.4g  %.1f samples/s  ETA %s", loss, samples_per_sec,
                        FormatDuration(eta_seconds));
  return text;
}

bool IsTerminal(FILE* stream) { return stream != nullptr && isatty(fileno(stream)) == 1; }

}  // namespace clipscale
