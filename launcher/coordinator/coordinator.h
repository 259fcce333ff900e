// The coordinator of a `clipscale launch` job: a gRPC service (coordinator.proto)
// that the supervisor runs in its own process, so it outlives every worker
// job it watches. Per attempt of the worker job it
//   - lets the W ranks join with the job's token, checks that they run the
//     same build, recipe, data index and starting step, and releases them together;
//   - records their heartbeats (step, phase, progress) and tells the
//     supervisor (Check) when a rank is dead (silent for heartbeat_misses
//     periods) or the job is hung (no rank progressed for max(hang_min_s,
//     hang_factor x median step time));
//   - commits a checkpoint once every rank has voted for its part (two-phase:
//     the ranks write and fsync into step_N.tmp/, the coordinator writes the
//     manifest, renames and moves `latest`);
//   - keeps the failures and bad-data counts for the status and the summary.
// It uses no LibTorch and knows no MPI: the supervisor (supervisor.h) owns
// the processes, the trainer talks to it through coordinator_client.h.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "launcher/coordinator/coordinator.pb.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace clipscale {

struct CoordinatorOptions {
  std::string listen = "127.0.0.1:0";  // port 0: any free port
  std::string job_id;
  std::string token;
  double heartbeat_s = 1;
  int heartbeat_misses = 3;
  double hang_min_s = 300;
  double hang_factor = 5;
  double startup_timeout_s = 600;
  double orphan_s = 60;  // a worker that cannot reach the coordinator this long stops
  double vote_timeout_s = 600;  // a save whose votes are not all in by then is dropped
  int max_message_bytes = 1 << 20;  // larger requests are refused (RESOURCE_EXHAUSTED)
  std::string checkpoint_root;      // <output>/checkpoints
  int64_t keep = 3, keep_every = 0;
  int64_t global_batch = 0;         // for samples/s
};

// What the supervisor expects of one attempt of the worker job.
struct AttemptPlan {
  int attempt = 0;
  int world_size = 1;
  int64_t resume_step = 0;                 // 0: a fresh start
  std::optional<uint64_t> index_hash;      // the checkpoint's; unset: the ranks must agree
  std::string resume_dir;
};

// Why the coordinator thinks the job cannot go on.
struct JobFault {
  int rank = -1;  // -1: not one rank's fault
  std::string host;
  std::string phase;
  int64_t step = 0;
  std::string cause;         // "rank 3 on host-b: no progress in all-reduce for 95 s at step 1234"
  bool restartable = true;   // false: a restart would fail the same way
  bool hang = false;         // detected by the coordinator (dead or hung), not by an exit
};

class Coordinator {
 public:
  // Starts serving on options.listen; address() is where ranks reach it (this
  // host's name for 0.0.0.0 or [::], every interface).
  static absl::StatusOr<std::unique_ptr<Coordinator>> Start(CoordinatorOptions options);
  ~Coordinator();

  const std::string& address() const { return address_; }
  const CoordinatorOptions& options() const { return options_; }

  // A new attempt: the previous one's workers are refused from now on.
  void BeginAttempt(const AttemptPlan& plan);
  // The attempt is over (its workers are gone): waiting calls return.
  void EndAttempt(const std::string& state);

  // A rank dead, the job hung, or the ranks never all joined: the first fault
  // found, once per attempt. nullopt while all is well.
  std::optional<JobFault> Check();
  // After the worker job exited with a failure: what the ranks reported
  // (Failed), else `hint` (the rank mpirun named, -1: none) where the
  // coordinator last saw it, else the rank that fell silent first.
  JobFault Diagnose(int hint = -1);
  // Seconds from the attempt's start to the first step any rank finished in
  // it (nullopt: none yet).
  std::optional<double> FirstStepSeconds() const;
  // Seconds from the attempt's start until every rank had joined.
  std::optional<double> JoinedSeconds() const;

  void RecordFailure(const coordinator::FailureRecord& failure);
  void SetRecoverySeconds(double seconds);
  void SetState(const std::string& state);
  coordinator::JobStatus Status() const;
  int64_t refused_requests() const;

  class Service;

 private:
  using Clock = std::chrono::steady_clock;
  struct RankState {
    bool registered = false;
    bool failed = false;
    std::string host;
    int64_t pid = 0;
    int64_t step = 0;
    int phase = 0;
    int64_t seq = -1;
    Clock::time_point last_heartbeat, last_progress;
    std::map<std::string, int64_t> bad_by_shard;
    int64_t skipped_steps = 0;
    std::string cause;  // from Failed
    bool restartable = true;
  };
  struct VoteRecord {
    std::vector<coordinator::FileEntry> files;
    std::string error;
  };
  struct SaveRecord {
    std::map<int, VoteRecord> votes;
    bool decided = false;
    bool committed = false;
    std::string dir, reason;
    Clock::time_point first_vote;
  };

  explicit Coordinator(CoordinatorOptions options);
  // Under mu_.
  // `stale`: the credentials are right but name an attempt that is over.
  bool Authorized(const coordinator::Credentials& auth, bool any_attempt, std::string* why,
                  bool* stale = nullptr);
  void DecideSave(int64_t step, SaveRecord* save);
  bool Joined(int rank) const;  // a rank of this attempt that registered
  std::string Describe(int rank) const;
  double MedianStepSeconds() const;

  const CoordinatorOptions options_;
  std::string address_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  AttemptPlan plan_;
  bool attempt_open_ = false;
  Clock::time_point attempt_start_ = Clock::now();
  std::vector<RankState> ranks_;
  int registered_ = 0;
  std::string build_;  // of the first rank to join
  uint64_t config_hash_ = 0, index_hash_ = 0;
  bool released_ = false;   // every rank joined
  std::string refusal_;     // why a joining rank was refused (the attempt cannot start)
  std::optional<Clock::time_point> first_step_at_, joined_at_;
  std::vector<double> step_seconds_;  // recent step times (rank 0's), for the hang bound
  bool fault_reported_ = false;
  std::map<int64_t, SaveRecord> saves_;
  std::string last_checkpoint_;
  int64_t last_checkpoint_step_ = -1;
  std::vector<coordinator::FailureRecord> failures_;
  std::string state_ = "starting";
  double recovery_s_ = 0;
  int64_t refused_ = 0;
};

// 32 random bytes from the kernel, as 64 hex digits: a job's token.
absl::StatusOr<std::string> NewJobToken();

}  // namespace clipscale
