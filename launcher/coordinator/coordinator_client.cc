#include "launcher/coordinator/coordinator_client.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/logging.h"
#include "core/process_info.h"
#include "core/status.h"
#include "launcher/coordinator/coordinator.grpc.pb.h"

namespace clipscale {
namespace {

// Long enough for the slowest rank to load its data and join; the
// coordinator's own startup timeout ends a join that never completes.
constexpr double kRegisterDeadlineS = 24 * 3600;
constexpr double kCallDeadlineS = 10;

void SetDeadline(grpc::ClientContext* context, double seconds) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
}

absl::Status FromGrpc(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat("coordinator: ", what, ": ", status.error_message());
  switch (status.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(message);
    case grpc::StatusCode::FAILED_PRECONDITION:
      return absl::FailedPreconditionError(message);
    default:
      return absl::UnavailableError(message);
  }
}

}  // namespace

struct CoordinatorClient::Impl {
  std::unique_ptr<coordinator::Coordinator::Stub> stub;
};

absl::StatusOr<std::unique_ptr<CoordinatorClient>> CoordinatorClient::FromEnvironment() {
  const char* address = std::getenv(kCoordinatorVariable);
  if (!address || !*address) return nullptr;
  const char* job = std::getenv(kJobIdVariable);
  const char* token = std::getenv(kJobTokenVariable);
  if (!job || !token || !*job || !*token) {
    return absl::InvalidArgumentError(absl::StrCat(kCoordinatorVariable, " is set but ",
                                                   kJobIdVariable, " or ", kJobTokenVariable,
                                                   " is not: start the job with clipscale launch"));
  }
  coordinator::Credentials auth;
  auth.set_job_id(job);
  auth.set_token(token);
  int attempt = 0;
  const char* attempt_text = std::getenv("CLIPSCALE_ATTEMPT");
  if (attempt_text && absl::SimpleAtoi(attempt_text, &attempt)) auth.set_attempt(attempt);
  ::unsetenv(kJobTokenVariable);  // nothing this process starts needs it
  return std::make_unique<CoordinatorClient>(address, std::move(auth));
}

CoordinatorClient::CoordinatorClient(std::string address, coordinator::Credentials auth)
    : impl_(std::make_unique<Impl>()), auth_(std::move(auth)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  impl_->stub = coordinator::Coordinator::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

CoordinatorClient::~CoordinatorClient() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
}

absl::StatusOr<JobPlan> CoordinatorClient::Register(const WorkerInfo& info) {
  coordinator::RegisterRequest request;
  *request.mutable_auth() = auth_;
  request.set_rank(info.rank);
  request.set_world_size(info.world_size);
  request.set_host(info.host.empty() ? HostName() : info.host);
  request.set_pid(info.pid ? info.pid : ::getpid());
  request.set_build(info.build.empty() ? BuildStamp() : info.build);
  request.set_config_hash(info.config_hash);
  request.set_index_hash(info.index_hash);
  request.set_resume_step(info.resume_step);
  request.set_global_batch(info.global_batch);
  coordinator::RegisterReply reply;
  grpc::ClientContext context;
  SetDeadline(&context, kRegisterDeadlineS);
  context.set_wait_for_ready(true);  // the coordinator may still be starting
  RETURN_IF_ERROR(FromGrpc(impl_->stub->Register(&context, request, &reply), "joining the job"));
  rank_ = info.rank;
  heartbeat_s_ = reply.heartbeat_s() > 0 ? reply.heartbeat_s() : 1;
  orphan_s_ = reply.orphan_s() > 0 ? reply.orphan_s() : 60;
  step_ = info.resume_step;
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  return JobPlan{reply.index_hash(), reply.resume_step()};
}

void CoordinatorClient::Progress(int64_t step, Phase phase) {
  step_ = step;
  phase_ = static_cast<int>(phase);
  ++seq_;
  if (phase == Phase::kDone) cv_.notify_all();  // the last heartbeat goes now
}

void CoordinatorClient::StepTime(double seconds) { last_step_s_ = seconds; }

void CoordinatorClient::BadData(const std::map<std::string, int64_t>& by_shard) {
  std::lock_guard<std::mutex> lock(mu_);
  bad_by_shard_ = by_shard;
}

void CoordinatorClient::SkippedStep(int64_t) { ++skipped_; }

void CoordinatorClient::HeartbeatLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  auto last_ok = std::chrono::steady_clock::now();
  while (true) {
    coordinator::HeartbeatRequest request;
    *request.mutable_auth() = auth_;
    request.set_rank(rank_);
    request.set_step(step_);
    request.set_phase(phase_);
    request.set_progress_seq(seq_);
    request.set_last_step_s(last_step_s_);
    request.set_skipped_steps(skipped_);
    for (const auto& [shard, count] : bad_by_shard_) (*request.mutable_bad_by_shard())[shard] = count;
    lock.unlock();
    coordinator::HeartbeatReply reply;
    grpc::ClientContext context;
    SetDeadline(&context, kCallDeadlineS);
    const grpc::Status status = impl_->stub->Heartbeat(&context, request, &reply);
    if (status.ok()) {
      last_ok = std::chrono::steady_clock::now();
    } else if (status.error_code() == grpc::StatusCode::ABORTED) {
      // The supervisor tore this attempt down and this rank survived it (on
      // another host, or in a srun step Slurm is still killing): stop now
      // rather than sit in a collective until KillWait or orphan_s.
      FatalError(__FILE__, __LINE__,
                 absl::StrCat("the coordinator ended this rank's attempt (", status.error_message(),
                              "): stopping"));
    } else if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
               status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      LogWarning("coordinator: heartbeat refused: ", status.error_message());
    }
    // A rank whose supervisor is gone would train on with nobody to commit its
    // checkpoints or restart it: it stops instead (the job is requeued whole).
    const double silent =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - last_ok).count();
    if (silent > std::max(orphan_s_, 3 * heartbeat_s_)) {
      FatalError(__FILE__, __LINE__,
                 absl::StrFormat("the coordinator has not answered for %.0f s (%s): its "
                                 "supervisor is gone; stopping this rank",
                                 silent, status.error_message()));
    }
    lock.lock();
    if (request.phase() == static_cast<int>(Phase::kDone) || stop_) break;
    cv_.wait_for(lock, std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s_ * 1000)),
                 [&] { return stop_ || phase_ == static_cast<int>(Phase::kDone); });
  }
}

absl::StatusOr<std::string> CoordinatorClient::Vote(int64_t step,
                                                    const std::vector<ManifestEntry>& files,
                                                    const std::string& error, bool wait) {
  coordinator::VoteRequest request;
  *request.mutable_auth() = auth_;
  request.set_rank(rank_);
  request.set_step(step);
  for (const ManifestEntry& f : files) {
    coordinator::FileEntry* e = request.add_files();
    e->set_name(f.name);
    e->set_size(f.size);
    e->set_crc32c(f.crc32c);
  }
  request.set_error(error);
  request.set_wait(wait);
  coordinator::VoteReply reply;
  grpc::ClientContext context;
  SetDeadline(&context, wait ? 3600 : kCallDeadlineS);
  RETURN_IF_ERROR(FromGrpc(impl_->stub->Vote(&context, request, &reply),
                           absl::StrCat("voting for the checkpoint of step ", step)));
  if (!wait) return std::string();
  if (!reply.committed()) {
    return absl::AbortedError(absl::StrCat("the coordinator did not commit step ", step, ": ",
                                           reply.reason()));
  }
  return reply.dir();
}

void CoordinatorClient::Failed(const std::string& cause) { Failed(cause, true); }

void CoordinatorClient::Failed(const std::string& cause, bool restartable) {
  coordinator::FailedRequest request;
  *request.mutable_auth() = auth_;
  request.set_rank(rank_ >= 0 ? rank_ : 0);
  request.set_cause(cause);
  request.set_restartable(restartable);
  coordinator::FailedReply reply;
  grpc::ClientContext context;
  SetDeadline(&context, 2);
  impl_->stub->Failed(&context, request, &reply);  // best effort: the rank is going down
}

}  // namespace clipscale
