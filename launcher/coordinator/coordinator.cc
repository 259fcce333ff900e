#include "launcher/coordinator/coordinator.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/checkpoint_dir.h"
#include "core/process_info.h"
#include "launcher/coordinator/coordinator.grpc.pb.h"
#include "train/job_control.h"

namespace clipscale {
namespace {

using coordinator::Credentials;

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Compares without an early exit, so the time a refusal takes says nothing
// about how much of a guessed token was right.
bool SameToken(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

const char* PhaseLabel(int phase) { return PhaseName(static_cast<Phase>(phase)); }

}  // namespace

absl::StatusOr<std::string> NewJobToken() {
  const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError("cannot open /dev/urandom for the job token");
  unsigned char bytes[32];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = ::read(fd, bytes + got, sizeof(bytes) - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got != sizeof(bytes)) return absl::InternalError("short read from /dev/urandom");
  std::string hex;
  for (unsigned char b : bytes) absl::StrAppendFormat(&hex, "%02x", b);
  return hex;
}

// The gRPC face: each handler checks the credentials, then works on the
// coordinator's state under its mutex.
class Coordinator::Service final : public coordinator::Coordinator::Service {
 public:
  explicit Service(Coordinator* c) : c_(c) {}

  grpc::Status Register(grpc::ServerContext* context, const coordinator::RegisterRequest* request,
                        coordinator::RegisterReply* reply) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const coordinator::HeartbeatRequest* request,
                         coordinator::HeartbeatReply*) override;
  grpc::Status Vote(grpc::ServerContext* context, const coordinator::VoteRequest* request,
                    coordinator::VoteReply* reply) override;
  grpc::Status Failed(grpc::ServerContext*, const coordinator::FailedRequest* request,
                      coordinator::FailedReply*) override;
  grpc::Status GetStatus(grpc::ServerContext*, const coordinator::StatusRequest* request,
                         coordinator::JobStatus* reply) override;

 private:
  Coordinator* c_;
};

bool Coordinator::Authorized(const Credentials& auth, bool any_attempt, std::string* why,
                             bool* stale) {
  if (!SameToken(auth.token(), options_.token) || auth.job_id() != options_.job_id) {
    ++refused_;
    *why = "refused: wrong job id or token";
    return false;
  }
  if (!any_attempt && (!attempt_open_ || auth.attempt() != plan_.attempt)) {
    ++refused_;
    *why = absl::StrCat("refused: attempt ", auth.attempt(), " of this job is over (now ",
                        attempt_open_ ? absl::StrCat("attempt ", plan_.attempt) : "none", ")");
    if (stale) *stale = true;
    return false;
  }
  return true;
}

grpc::Status Coordinator::Service::Register(grpc::ServerContext* context,
                                            const coordinator::RegisterRequest* request,
                                            coordinator::RegisterReply* reply) {
  std::unique_lock<std::mutex> lock(c_->mu_);
  std::string why;
  if (!c_->Authorized(request->auth(), false, &why)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, why);
  }
  const int rank = request->rank();
  const int world = c_->plan_.world_size;
  auto refuse = [&](const std::string& reason) {
    c_->refusal_ = absl::StrCat("rank ", rank, " on ", request->host(), ": ", reason);
    c_->cv_.notify_all();
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, c_->refusal_);
  };
  if (request->world_size() != world || rank < 0 || rank >= world) {
    return refuse(absl::StrCat("joins as rank ", rank, " of ", request->world_size(),
                               "; the job has ", world, " ranks"));
  }
  RankState& r = c_->ranks_[rank];
  if (r.registered) return refuse("joined twice (a second process with the same rank)");
  if (c_->registered_ == 0) {
    c_->build_ = request->build();
    c_->config_hash_ = request->config_hash();
    c_->index_hash_ = c_->plan_.index_hash.value_or(request->index_hash());
  }
  if (request->build() != c_->build_) {
    return refuse(absl::StrCat("runs build '", request->build(), "', other ranks '", c_->build_,
                               "': install the same clipscale everywhere"));
  }
  if (request->config_hash() != c_->config_hash_) {
    return refuse("runs another recipe than the other ranks (config hash differs)");
  }
  if (request->index_hash() != c_->index_hash_) {
    return refuse(absl::StrFormat(
        "sees the dataset index %016x, the job trains on %016x (shards changed or a rank "
        "reads another copy)",
        request->index_hash(), c_->index_hash_));
  }
  if (request->resume_step() != c_->plan_.resume_step) {
    return refuse(absl::StrCat("would start at step ", request->resume_step(),
                               "; the job resumes at step ", c_->plan_.resume_step,
                               c_->plan_.resume_dir.empty() ? "" : " (" + c_->plan_.resume_dir + ")"));
  }
  r.registered = true;
  r.host = request->host();
  r.pid = request->pid();
  r.last_heartbeat = r.last_progress = Clock::now();
  ++c_->registered_;
  const int attempt = c_->plan_.attempt;
  if (c_->registered_ == world) {
    c_->released_ = true;
    c_->joined_at_ = Clock::now();
    c_->state_ = "running";
  }
  c_->cv_.notify_all();
  // Everyone starts together, or nobody (a refused rank, or the attempt ended).
  while (!c_->released_ && c_->refusal_.empty() && c_->attempt_open_ &&
         c_->plan_.attempt == attempt && !context->IsCancelled()) {
    c_->cv_.wait_for(lock, std::chrono::milliseconds(200));
  }
  if (!c_->released_ || c_->plan_.attempt != attempt) {
    return grpc::Status(grpc::StatusCode::ABORTED,
                        c_->refusal_.empty() ? "the attempt ended before every rank joined"
                                             : "another rank was refused: " + c_->refusal_);
  }
  // Every rank's heartbeat clock starts now, not when it joined.
  for (RankState& each : c_->ranks_) each.last_heartbeat = each.last_progress = Clock::now();
  reply->set_index_hash(c_->index_hash_);
  reply->set_resume_step(c_->plan_.resume_step);
  reply->set_heartbeat_s(c_->options_.heartbeat_s);
  reply->set_orphan_s(c_->options_.orphan_s);
  return grpc::Status::OK;
}

grpc::Status Coordinator::Service::Heartbeat(grpc::ServerContext*,
                                             const coordinator::HeartbeatRequest* request,
                                             coordinator::HeartbeatReply*) {
  std::lock_guard<std::mutex> lock(c_->mu_);
  std::string why;
  bool stale = false;
  if (!c_->Authorized(request->auth(), false, &why, &stale)) {
    // ABORTED tells a rank that outlived its attempt's tear-down (a rank on
    // another host, or in a srun step that is still being killed) to stop.
    return grpc::Status(stale ? grpc::StatusCode::ABORTED : grpc::StatusCode::UNAUTHENTICATED, why);
  }
  const int rank = request->rank();
  if (!c_->Joined(rank)) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "heartbeat from a rank that never joined");
  }
  if (request->phase() < 0 || request->phase() >= kNumPhases) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unknown phase");
  }
  RankState& r = c_->ranks_[rank];
  const auto now = Clock::now();
  r.last_heartbeat = now;
  if (request->progress_seq() != r.seq) {
    r.seq = request->progress_seq();
    r.last_progress = now;
  }
  if (request->step() > c_->plan_.resume_step && !c_->first_step_at_) c_->first_step_at_ = now;
  if (rank == 0 && request->step() != r.step && request->last_step_s() > 0) {
    c_->step_seconds_.push_back(request->last_step_s());
    if (c_->step_seconds_.size() > 200) c_->step_seconds_.erase(c_->step_seconds_.begin());
  }
  r.step = request->step();
  r.phase = request->phase();
  r.skipped_steps = request->skipped_steps();
  r.bad_by_shard.clear();
  for (const auto& [shard, count] : request->bad_by_shard()) r.bad_by_shard[shard] = count;
  return grpc::Status::OK;
}

void Coordinator::DecideSave(int64_t step, SaveRecord* save) {
  for (const auto& [rank, vote] : save->votes) {
    if (!vote.error.empty()) {
      save->decided = true;
      save->reason = absl::StrCat("rank ", rank, " could not write its part: ", vote.error);
      return;
    }
  }
  if (static_cast<int>(save->votes.size()) < plan_.world_size) return;
  save->decided = true;
  auto writer = CheckpointDirWriter::Open(options_.checkpoint_root, step);
  absl::Status status = writer.status();
  for (const auto& [rank, vote] : save->votes) {
    for (const coordinator::FileEntry& f : vote.files) {
      if (status.ok()) status = writer->AddEntry({f.name(), f.size(), f.crc32c()});
    }
  }
  absl::StatusOr<std::string> dir = status.ok() ? writer->Commit() : status;
  if (!dir.ok()) {
    save->reason = std::string(dir.status().message());
    return;
  }
  save->committed = true;
  save->dir = *dir;
  last_checkpoint_ = *dir;
  last_checkpoint_step_ = step;
  PruneCheckpoints(options_.checkpoint_root, options_.keep, options_.keep_every);
}

grpc::Status Coordinator::Service::Vote(grpc::ServerContext* context,
                                        const coordinator::VoteRequest* request,
                                        coordinator::VoteReply* reply) {
  std::unique_lock<std::mutex> lock(c_->mu_);
  std::string why;
  if (!c_->Authorized(request->auth(), false, &why)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, why);
  }
  const int rank = request->rank();
  if (!c_->Joined(rank)) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "vote from a rank that never joined");
  }
  const int64_t step = request->step();
  SaveRecord& save = c_->saves_[step];
  if (save.votes.empty()) save.first_vote = Clock::now();
  if (save.votes.count(rank)) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "voted twice for one checkpoint");
  }
  if (save.decided) {  // another rank's NO vote (or a timeout) dropped it already
    reply->set_reason(save.reason);
    return grpc::Status::OK;
  }
  VoteRecord& vote = save.votes[rank];
  vote.files.assign(request->files().begin(), request->files().end());
  vote.error = request->error();
  c_->DecideSave(step, &save);
  c_->cv_.notify_all();
  if (request->wait()) {
    const int attempt = c_->plan_.attempt;
    const auto deadline = save.first_vote + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(c_->options_.vote_timeout_s));
    while (!save.decided && c_->attempt_open_ && c_->plan_.attempt == attempt &&
           !context->IsCancelled() && Clock::now() < deadline) {
      c_->cv_.wait_for(lock, std::chrono::milliseconds(200));
    }
    if (!save.decided) {
      save.decided = true;
      save.reason = absl::StrCat("not every rank voted within ", c_->options_.vote_timeout_s, " s");
    }
  }
  reply->set_committed(save.committed);
  reply->set_dir(save.dir);
  reply->set_reason(save.reason);
  // Decided saves of earlier steps are of no more use.
  for (auto it = c_->saves_.begin(); it != c_->saves_.end() && it->first < step;) {
    it = it->second.decided ? c_->saves_.erase(it) : std::next(it);
  }
  return grpc::Status::OK;
}

grpc::Status Coordinator::Service::Failed(grpc::ServerContext*,
                                          const coordinator::FailedRequest* request,
                                          coordinator::FailedReply*) {
  std::lock_guard<std::mutex> lock(c_->mu_);
  std::string why;
  if (!c_->Authorized(request->auth(), false, &why)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, why);
  }
  const int rank = request->rank();
  if (rank < 0 || rank >= static_cast<int>(c_->ranks_.size())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no such rank");
  }
  RankState& r = c_->ranks_[rank];
  if (!r.failed) {
    r.failed = true;
    r.cause = request->cause().substr(0, 4096);
    r.restartable = request->restartable();
  }
  return grpc::Status::OK;
}

grpc::Status Coordinator::Service::GetStatus(grpc::ServerContext*,
                                             const coordinator::StatusRequest* request,
                                             coordinator::JobStatus* reply) {
  {
    std::lock_guard<std::mutex> lock(c_->mu_);
    std::string why;
    if (!c_->Authorized(request->auth(), true, &why)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, why);
    }
  }
  *reply = c_->Status();
  return grpc::Status::OK;
}

Coordinator::Coordinator(CoordinatorOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Start(CoordinatorOptions options) {
  if (options.token.size() < 32) return absl::InvalidArgumentError("the job token is too short");
  std::unique_ptr<Coordinator> c(new Coordinator(std::move(options)));
  c->service_ = std::make_unique<Service>(c.get());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(c->options_.listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(c->options_.max_message_bytes);
  builder.SetMaxSendMessageSize(16 << 20);
  builder.RegisterService(c->service_.get());
  c->server_ = builder.BuildAndStart();
  if (!c->server_ || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("the coordinator cannot listen on ", c->options_.listen));
  }
  const std::string& listen = c->options_.listen;
  std::string host = listen.substr(0, listen.rfind(':'));
  // Every interface: the ranks on other hosts reach it by this host's name.
  if (host.empty() || host == "0.0.0.0" || host == "[::]") host = HostName();
  c->address_ = absl::StrCat(host, ":", port);
  return c;
}

Coordinator::~Coordinator() {
  EndAttempt("finished");
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void Coordinator::BeginAttempt(const AttemptPlan& plan) {
  std::lock_guard<std::mutex> lock(mu_);
  plan_ = plan;
  attempt_open_ = true;
  attempt_start_ = Clock::now();
  ranks_.assign(plan.world_size, RankState());
  registered_ = 0;
  build_.clear();
  released_ = false;
  refusal_.clear();
  first_step_at_.reset();
  joined_at_.reset();
  fault_reported_ = false;
  saves_.clear();
  state_ = "starting";
  cv_.notify_all();
}

void Coordinator::EndAttempt(const std::string& state) {
  std::lock_guard<std::mutex> lock(mu_);
  attempt_open_ = false;
  state_ = state;
  cv_.notify_all();
}

bool Coordinator::Joined(int rank) const {
  return rank >= 0 && rank < static_cast<int>(ranks_.size()) && ranks_[rank].registered;
}

std::string Coordinator::Describe(int rank) const {
  const RankState& r = ranks_[rank];
  return absl::StrCat("rank ", rank, r.host.empty() ? "" : " on " + r.host);
}

double Coordinator::MedianStepSeconds() const {
  if (step_seconds_.empty()) return 0;
  std::vector<double> sorted = step_seconds_;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  return sorted[sorted.size() / 2];
}

std::optional<JobFault> Coordinator::Check() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!attempt_open_ || fault_reported_) return std::nullopt;
  auto report = [&](JobFault fault) {
    fault_reported_ = true;
    fault.hang = true;
    return std::optional<JobFault>(std::move(fault));
  };
  if (!refusal_.empty()) {
    JobFault fault;
    fault.cause = "refused at registration: " + refusal_;
    fault.restartable = false;  // the same processes would be refused again
    return report(fault);
  }
  if (!released_) {
    if (Since(attempt_start_) <= options_.startup_timeout_s) return std::nullopt;
    JobFault fault;
    for (int rank = 0; rank < plan_.world_size; ++rank) {
      if (!ranks_[rank].registered) {
        fault.rank = rank;
        break;
      }
    }
    fault.phase = "startup";
    fault.cause = absl::StrFormat("rank %d never joined the job within %.0f s (launch.startup_timeout_s)",
                                  fault.rank, options_.startup_timeout_s);
    return report(fault);
  }
  const double dead_after = options_.heartbeat_s * options_.heartbeat_misses;
  const double bound = std::max(options_.hang_min_s, options_.hang_factor * MedianStepSeconds());
  int stuck = -1;
  double newest_progress = 1e300;
  for (int rank = 0; rank < plan_.world_size; ++rank) {
    const RankState& r = ranks_[rank];
    if (r.phase == static_cast<int>(Phase::kDone)) continue;  // finished: no more heartbeats
    const double silent = Since(r.last_heartbeat);
    if (silent > dead_after) {
      JobFault fault{rank, r.host, PhaseLabel(r.phase), r.step,
                     absl::StrFormat("%s: no heartbeat for %.1f s (last seen in %s at step %d): "
                                     "dead, stopped or cut off",
                                     Describe(rank), silent, PhaseLabel(r.phase), r.step)};
      return report(fault);
    }
    newest_progress = std::min(newest_progress, Since(r.last_progress));
    // The stuck rank is the one furthest behind: the others went on into the
    // collective that waits for it.
    const RankState* s = stuck < 0 ? nullptr : &ranks_[stuck];
    if (!s || std::tie(r.step, r.phase) < std::tie(s->step, s->phase) ||
        (r.step == s->step && r.phase == s->phase && r.last_progress < s->last_progress)) {
      stuck = rank;
    }
  }
  if (stuck < 0) return std::nullopt;  // every rank is done
  // Evaluation and the first step (compilation, caches) get the startup bound.
  const RankState& s = ranks_[stuck];
  const bool slow_phase = s.phase == static_cast<int>(Phase::kEval) ||
                          s.phase == static_cast<int>(Phase::kStartup) ||
                          s.step == plan_.resume_step;
  const double limit = slow_phase ? std::max(bound, options_.startup_timeout_s) : bound;
  if (newest_progress <= limit) return std::nullopt;
  JobFault fault{stuck, s.host, PhaseLabel(s.phase), s.step,
                 absl::StrFormat("%s: no progress in %s for %.0f s at step %d (the job is hung: "
                                 "no rank progressed for more than %.0f s)",
                                 Describe(stuck), PhaseLabel(s.phase), Since(s.last_progress),
                                 s.step, limit)};
  return report(fault);
}

JobFault Coordinator::Diagnose(int hint) {
  std::lock_guard<std::mutex> lock(mu_);
  JobFault fault;
  for (int rank = 0; rank < static_cast<int>(ranks_.size()); ++rank) {
    const RankState& r = ranks_[rank];
    if (r.failed) {
      return JobFault{rank, r.host, PhaseLabel(r.phase), r.step, r.cause, r.restartable};
    }
  }
  if (hint >= 0 && hint < static_cast<int>(ranks_.size())) {
    const RankState& r = ranks_[hint];
    return JobFault{hint, r.host, r.registered ? PhaseLabel(r.phase) : "startup", r.step, ""};
  }
  // No rank said why: the one silent longest (a crash leaves no report).
  double longest = options_.heartbeat_s * 1.5;
  for (int rank = 0; rank < static_cast<int>(ranks_.size()); ++rank) {
    const RankState& r = ranks_[rank];
    if (!r.registered) continue;
    const double silent = Since(r.last_heartbeat);
    if (silent > longest) {
      longest = silent;
      fault = JobFault{rank, r.host, PhaseLabel(r.phase), r.step, ""};
    }
  }
  if (fault.rank < 0 && !ranks_.empty() && ranks_[0].registered) {
    fault.step = ranks_[0].step;
    fault.phase = PhaseLabel(ranks_[0].phase);
  }
  return fault;
}

std::optional<double> Coordinator::FirstStepSeconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!first_step_at_) return std::nullopt;
  return std::chrono::duration<double>(*first_step_at_ - attempt_start_).count();
}

std::optional<double> Coordinator::JoinedSeconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!joined_at_) return std::nullopt;
  return std::chrono::duration<double>(*joined_at_ - attempt_start_).count();
}

void Coordinator::RecordFailure(const coordinator::FailureRecord& failure) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_.push_back(failure);
}

void Coordinator::SetRecoverySeconds(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  recovery_s_ = seconds;
}

void Coordinator::SetState(const std::string& state) {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = state;
}

int64_t Coordinator::refused_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_;
}

coordinator::JobStatus Coordinator::Status() const {
  std::lock_guard<std::mutex> lock(mu_);
  coordinator::JobStatus s;
  s.set_job_id(options_.job_id);
  s.set_attempt(plan_.attempt);
  s.set_world_size(plan_.world_size);
  s.set_state(state_);
  s.set_address(address_);
  int64_t step = -1;
  std::map<std::string, int64_t> bad;
  int64_t skipped = 0;
  for (int rank = 0; rank < static_cast<int>(ranks_.size()); ++rank) {
    const RankState& r = ranks_[rank];
    coordinator::RankStatus* out = s.add_ranks();
    out->set_rank(rank);
    out->set_host(r.host);
    out->set_pid(r.pid);
    out->set_step(r.step);
    out->set_phase(r.registered ? PhaseLabel(r.phase) : "not joined");
    if (r.registered) {
      out->set_since_heartbeat_s(Since(r.last_heartbeat));
      out->set_since_progress_s(Since(r.last_progress));
    }
    if (step < 0 || r.step < step) step = r.step;
    for (const auto& [shard, count] : r.bad_by_shard) bad[shard] += count;
    skipped = std::max(skipped, r.skipped_steps);
  }
  s.set_step(std::max<int64_t>(step, 0));
  const double median = MedianStepSeconds();
  if (median > 0) s.set_samples_per_s(options_.global_batch / median);
  s.set_last_checkpoint(last_checkpoint_);
  s.set_last_checkpoint_step(last_checkpoint_step_);
  for (const auto& f : failures_) *s.add_failures() = f;
  std::vector<std::pair<int64_t, std::string>> worst;
  for (const auto& [shard, count] : bad) worst.emplace_back(-count, shard);
  std::sort(worst.begin(), worst.end());
  for (size_t i = 0; i < worst.size() && i < 5; ++i) {
    coordinator::ShardCount* c = s.add_worst_shards();
    c->set_shard(worst[i].second);
    c->set_bad(-worst[i].first);
  }
  s.set_skipped_steps(skipped);
  s.set_recovery_s(recovery_s_);
  return s;
}

}  // namespace clipscale
