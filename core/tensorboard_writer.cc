#include "core/tensorboard_writer.h"

#include <unistd.h>

#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/logging.h"
#include "core/process_info.h"
#include "core/status.h"
#include "core/tensorboard_event.pb.h"
#include "core/tfrecord.h"

namespace clipscale {
namespace {

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string EventFileName(double now) {
  static std::atomic<int> writers_opened{0};
  return absl::StrFormat("events.out.tfevents.%010d.%s.%d.%d", static_cast<int64_t>(now),
                         HostName(), static_cast<int>(getpid()), writers_opened++);
}

std::string FramedEvent(const tensorflow::Event& event) {
  std::string record;
  AppendTfRecord(event.SerializeAsString(), &record);
  return record;
}

}  // namespace

float ToTensorBoardFloat(double value) {
  if (std::isnan(value)) return std::numeric_limits<float>::quiet_NaN();
  const double magnitude = std::fabs(value);
  if (magnitude <= FLT_MAX) return static_cast<float>(value);
  // Round to nearest as the hardware would, without the out-of-range cast:
  // from FLT_MAX plus half its ulp (2^103) upward the nearest float is inf.
  const float rounded = magnitude >= static_cast<double>(FLT_MAX) + std::ldexp(1.0, 103)
                            ? std::numeric_limits<float>::infinity()
                            : FLT_MAX;
  return value < 0 ? -rounded : rounded;
}

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::Create(
    const std::string& log_dir, const FlushPolicy& policy) {
  std::error_code error;
  std::filesystem::create_directories(log_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create TensorBoard log dir ", log_dir, ": ", error.message()));
  }
  const double now = UnixSeconds();
  const std::string path = (std::filesystem::path(log_dir) / EventFileName(now)).string();
  ASSIGN_OR_RETURN(auto file, AppendFile::Open(path, /*exclusive=*/true, policy));
  tensorflow::Event version;
  version.set_wall_time(now);
  version.set_file_version("brain.Event:2");
  file->Append(FramedEvent(version));
  // Written at once so TensorBoard lists the run before its first flush.
  RETURN_IF_ERROR(file->Flush());
  return std::unique_ptr<TensorBoardWriter>(new TensorBoardWriter(std::move(file)));
}

TensorBoardWriter::~TensorBoardWriter() {
  absl::Status status = Flush();
  if (!status.ok()) LogError("TensorBoard events were lost: ", std::string(status.message()));
}

void TensorBoardWriter::Scalar(const std::string& tag, double value, int64_t step) {
  tensorflow::Event event;
  event.set_wall_time(UnixSeconds());
  event.set_step(step);
  tensorflow::Summary::Value* summary_value = event.mutable_summary()->add_value();
  summary_value->set_tag(tag);
  summary_value->set_simple_value(ToTensorBoardFloat(value));
  file_->Append(FramedEvent(event));
}

absl::Status TensorBoardWriter::Flush() { return file_->Flush(); }

}  // namespace clipscale
