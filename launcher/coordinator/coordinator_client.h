// The trainer's side of the coordinator: a JobControl (train/job_control.h)
// over gRPC, with a thread that heartbeats the rank's latest (step, phase).
// `clipscale launch` passes the coordinator's address, the job id, the token
// and the attempt to the workers in the environment; FromEnvironment() finds
// them (nullptr when there are none: a plain `clipscale train`).
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "launcher/coordinator/coordinator.pb.h"
#include "train/job_control.h"

namespace clipscale {

inline constexpr char kCoordinatorVariable[] = "CLIPSCALE_COORDINATOR";  // host:port
inline constexpr char kJobIdVariable[] = "CLIPSCALE_JOB_ID";
inline constexpr char kJobTokenVariable[] = "CLIPSCALE_JOB_TOKEN";

class CoordinatorClient final : public JobControl {
 public:
  // nullptr without CLIPSCALE_COORDINATOR; an error when it is set but the
  // job id or token is missing. Takes the token out of the environment.
  static absl::StatusOr<std::unique_ptr<CoordinatorClient>> FromEnvironment();
  CoordinatorClient(std::string address, coordinator::Credentials auth);
  ~CoordinatorClient() override;

  bool supervised() const override { return true; }
  // The rank Failed() speaks for before Register (a recipe error at startup).
  void set_rank(int rank) { rank_ = rank; }
  absl::StatusOr<JobPlan> Register(const WorkerInfo& info) override;
  void Progress(int64_t step, Phase phase) override;
  void StepTime(double seconds) override;
  void BadData(const std::map<std::string, int64_t>& by_shard) override;
  void SkippedStep(int64_t step) override;
  absl::StatusOr<std::string> Vote(int64_t step, const std::vector<ManifestEntry>& files,
                                   const std::string& error, bool wait) override;
  void Failed(const std::string& cause) override;
  // Failed() with whether a restart could help.
  void Failed(const std::string& cause, bool restartable);

 private:
  struct Impl;
  void HeartbeatLoop();

  std::unique_ptr<Impl> impl_;
  coordinator::Credentials auth_;
  int rank_ = -1;
  double heartbeat_s_ = 1;
  double orphan_s_ = 60;
  std::atomic<int64_t> step_{0}, seq_{0}, skipped_{0};
  std::atomic<int> phase_{0};
  std::atomic<double> last_step_s_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, int64_t> bad_by_shard_;
  std::thread heartbeat_;
};

}  // namespace clipscale
