#include "launcher/coordinator/supervisor.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/status.h"
#include "launcher/coordinator/slurm_env.h"
#include "launcher/coordinator/worker_job.h"

extern char** environ;

namespace clipscale {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The launch's own SIGTERM/SIGUSR1/SIGINT: passed on to the job as a request
// to save and stop.
std::atomic<int> g_signal{0};
extern "C" void OnSignal(int signal) {
  if (g_signal.load() == 0) g_signal.store(signal);
}

class SignalScope {
 public:
  SignalScope() {
    g_signal = 0;
    struct sigaction action = {};
    action.sa_handler = OnSignal;
    sigemptyset(&action.sa_mask);
    for (int s : {SIGTERM, SIGUSR1, SIGINT}) sigaction(s, &action, &old_[s]);
  }
  ~SignalScope() {
    for (int s : {SIGTERM, SIGUSR1, SIGINT}) sigaction(s, &old_[s], nullptr);
  }

 private:
  struct sigaction old_[32] = {};
};

int StopCode(int signal) { return signal == SIGINT ? 130 : 75; }

void WriteStatus(const std::string& path, const Coordinator& coordinator) {
  if (path.empty()) return;
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  if (google::protobuf::util::MessageToJsonString(coordinator.Status(), &json, options).ok()) {
    (void)WriteFileAtomically(path, json);
  }
}

// The slots of a hostfile ("host slots=N" lines; a bare host has one slot).
std::vector<std::pair<std::string, int>> ReadHostfile(const std::string& path) {
  std::vector<std::pair<std::string, int>> hosts;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    const std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.empty()) continue;
    int slots = 1;
    for (const std::string& w : words) {
      if (w.rfind("slots=", 0) == 0) (void)absl::SimpleAtoi(w.substr(6), &slots);
    }
    hosts.emplace_back(words[0], slots);
  }
  return hosts;
}

std::string Describe(const coordinator::FailureRecord& f) {
  return absl::StrCat("rank ", f.rank() >= 0 ? std::to_string(f.rank()) : "?",
                      f.host().empty() ? "" : " on " + f.host(), " (last seen in ",
                      f.phase().empty() ? "?" : f.phase(), " at step ", f.step(), "): ", f.cause());
}

// One launch: attempts of the worker job until one finishes or restarts run out.
class Supervisor {
 public:
  Supervisor(const SupervisorOptions& o, Coordinator& c)
      : o_(o), coordinator_(c), world_(o.np) {
    if (o.launcher == "srun") {
      hosts_ = o.slurm_nodes;
    } else if (!o.hostfile.empty()) {
      hosts_ = ReadHostfile(o.hostfile);
    }
  }
  int Run();

 private:
  struct Outcome {
    std::optional<int> status;  // mpirun's wait status
    std::optional<JobFault> fault;  // what the coordinator saw (dead, hung, refused)
    bool stopped = false;           // the launch was signalled
  };

  absl::StatusOr<std::optional<ResumePoint>> StartingPoint(int attempt);
  std::string Hostfile(int attempt);
  std::vector<std::string> Command(int attempt, const std::optional<ResumePoint>& point,
                                   const std::string& hostfile) const;
  std::vector<std::string> Environment(int attempt) const;
  Outcome Watch(WorkerJob& job);
  void ReportRecovery();
  JobFault Explain(const Outcome& outcome, WorkerJob& job);
  void Record(int attempt, const JobFault& fault);
  void MaybeLeaveOut(const JobFault& fault);
  int GiveUp(int attempt, bool restartable);
  bool Backoff(int attempt);  // false: a signal came while waiting
  // srun: SIGKILL to what is left of the attempt's step; waits up to wait_s
  // for it to be gone (its ranks hold the allocation's CPUs).
  void KillSteps(double wait_s);

  const SupervisorOptions& o_;
  Coordinator& coordinator_;
  int world_;
  std::vector<std::pair<std::string, int>> hosts_;
  std::map<std::string, int> slot_failures_;  // a host, or "rank R" on one machine
  std::set<std::string> excluded_;
  std::vector<coordinator::FailureRecord> failures_;
  // For the recovery time of the next attempt.
  std::optional<Clock::time_point> failed_at_;
  Clock::time_point attempt_start_ = Clock::now();
  double teardown_s_ = 0, backoff_s_ = 0;
  bool recovery_reported_ = true;
};

absl::StatusOr<std::optional<ResumePoint>> Supervisor::StartingPoint(int attempt) {
  // The first attempt resumes as the user asked; a restart from the newest
  // committed checkpoint (or from the start, or the user's, if none yet).
  const std::string resume = attempt == 0 ? o_.first_resume : "latest";
  if (resume.empty()) return std::optional<ResumePoint>();
  ASSIGN_OR_RETURN(std::optional<ResumePoint> point, o_.resolve(resume));
  if (!point && attempt > 0 && !o_.first_resume.empty()) return o_.resolve(o_.first_resume);
  return point;
}

std::string Supervisor::Hostfile(int attempt) {
  if (o_.launcher == "srun") return "";  // srun --exclude instead
  if (hosts_.empty() || excluded_.empty()) return o_.hostfile;
  const std::string path = absl::StrCat(o_.status_path, ".hostfile.", attempt);
  std::string text;
  for (const auto& [host, n] : hosts_) {
    if (!excluded_.count(host)) absl::StrAppend(&text, host, " slots=", n, "\n");
  }
  (void)WriteFileAtomically(path, text);
  return path;
}

std::vector<std::string> Supervisor::Command(int attempt, const std::optional<ResumePoint>& point,
                                             const std::string& hostfile) const {
  std::vector<std::string> argv;
  if (o_.launcher == "srun") {
    // A step of the allocation. srun passes the environment (the job's
    // credentials) to every task, and forwards SIGUSR1 to them. Open MPI from
    // Debian reaches Slurm through PMIx only (no PMI2 support built in).
    // --kill-on-bad-exit=0: a step Slurm cancels holds its CPUs for KillWait
    // (30 s by default) whether its tasks are gone or not, and the next step
    // queues behind it; the ranks end themselves instead (Open MPI aborts the
    // job when PMIx reports a lost rank; the coordinator tells survivors to
    // stop), and a tear-down SIGKILLs the tasks through scancel.
    argv = {"srun", "--mpi=pmix", absl::StrCat("--ntasks=", world_), "--kill-on-bad-exit=0",
            "--export=ALL", absl::StrCat("--job-name=clipscale-", o_.job_id)};
    if (!excluded_.empty()) {
      argv.push_back(absl::StrCat("--exclude=", absl::StrJoin(excluded_, ",")));
      argv.push_back(absl::StrCat("--nodes=", hosts_.size() - excluded_.size()));
    }
  } else {
    argv = {"mpirun"};
    if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
    argv.insert(argv.end(), {"-np", std::to_string(world_)});
    if (!hostfile.empty()) {
      argv.insert(argv.end(), {"--hostfile", hostfile});
    } else {
      argv.push_back("--oversubscribe");  // one machine: more ranks than cores is the user's call
    }
    for (const char* name : {"CLIPSCALE_COORDINATOR", "CLIPSCALE_JOB_ID", "CLIPSCALE_JOB_TOKEN",
                             "CLIPSCALE_ATTEMPT"}) {
      argv.insert(argv.end(), {"-x", name});  // to the ranks on other hosts too
    }
    for (const std::string& name : o_.forward_env) argv.insert(argv.end(), {"-x", name});
  }
  argv.insert(argv.end(), o_.launcher_args.begin(), o_.launcher_args.end());
  argv.insert(argv.end(), {o_.binary, "train"});
  argv.insert(argv.end(), o_.train_args.begin(), o_.train_args.end());
  if (point) argv.insert(argv.end(), {"--resume", point->dir});
  if (world_ != o_.np && o_.micro_batch == 0) {
    // Fewer ranks, larger shares: gradient caching keeps each encoder pass at
    // the original per-rank size.
    argv.insert(argv.end(), {"--set", absl::StrCat("data.micro_batch_size=", o_.global_batch / o_.np)});
  }
  return argv;
}

std::vector<std::string> Supervisor::Environment(int attempt) const {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "CLIPSCALE_ATTEMPT=", 18) != 0) env.push_back(*e);
  }
  env.push_back(absl::StrCat("CLIPSCALE_COORDINATOR=", coordinator_.address()));
  env.push_back(absl::StrCat("CLIPSCALE_JOB_ID=", coordinator_.options().job_id));
  env.push_back(absl::StrCat("CLIPSCALE_JOB_TOKEN=", coordinator_.options().token));
  env.push_back(absl::StrCat("CLIPSCALE_ATTEMPT=", attempt));
  return env;
}

void Supervisor::ReportRecovery() {
  if (recovery_reported_ || !failed_at_) return;
  const std::optional<double> first = coordinator_.FirstStepSeconds();
  if (!first) return;
  const double total = std::chrono::duration<double>(attempt_start_ - *failed_at_).count() + *first;
  const double joined = coordinator_.JoinedSeconds().value_or(*first);
  coordinator_.SetRecoverySeconds(total);
  std::fprintf(stderr,
               "clipscale launch: recovered: the first step after the restart ended %.1f s after "
               "the failure was detected (tear-down %.1f s, backoff %.1f s, start-up and join "
               "%.1f s, first step %.1f s)\n",
               total, teardown_s_, backoff_s_, joined, *first - joined);
  recovery_reported_ = true;
}

void Supervisor::KillSteps(double wait_s) {
  if (o_.launcher != "srun") return;
  const char* job = std::getenv("SLURM_JOB_ID");
  if (job && KillSlurmSteps(job, "clipscale-" + o_.job_id, wait_s) > 0 && wait_s > 0) {
    std::fprintf(stderr, "clipscale launch: killed the rest of the srun step\n");
  }
}

Supervisor::Outcome Supervisor::Watch(WorkerJob& job) {
  Outcome outcome;
  auto last_status_write = Clock::now() - std::chrono::seconds(10);
  while (!(outcome.status = job.Poll())) {
    if (g_signal.load() != 0 && !outcome.stopped) {
      // mpirun and srun pass SIGUSR1 to the ranks: they save at the next
      // step boundary and exit 75.
      std::fprintf(stderr, "clipscale launch: %s received: asking the job to save and stop\n",
                   strsignal(g_signal.load()));
      job.Signal(SIGUSR1);
      outcome.stopped = true;
    }
    if (!outcome.stopped && (outcome.fault = coordinator_.Check())) {
      failed_at_ = Clock::now();
      std::function<void()> kill_step;
      if (o_.launcher == "srun") kill_step = [this] { KillSteps(/*wait_s=*/0); };
      outcome.status = job.TearDown(kill_step, /*grace_s=*/5);
      break;
    }
    ReportRecovery();
    if (Since(last_status_write) >= 1) {
      WriteStatus(o_.status_path, coordinator_);
      last_status_write = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!outcome.fault) failed_at_ = Clock::now();
  job.Finish();
  KillSteps(/*wait_s=*/0);  // srun can exit before its step's tasks are gone
  teardown_s_ = Since(*failed_at_);
  return outcome;
}

JobFault Supervisor::Explain(const Outcome& outcome, WorkerJob& job) {
  if (outcome.fault) return *outcome.fault;
  // The job exited: what a rank reported, else what mpirun said, where the
  // coordinator last saw that rank.
  const MpirunVerdict verdict = job.verdict();
  JobFault fault = coordinator_.Diagnose(verdict.rank);
  if (fault.cause.empty() && fault.rank == verdict.rank) fault.cause = verdict.what;
  if (fault.host.empty()) fault.host = verdict.host;
  const std::string exit = absl::StrCat("the job ended with ", DescribeExit(*outcome.status));
  fault.cause = fault.cause.empty() ? exit : absl::StrCat(fault.cause, "; ", exit);
  return fault;
}

void Supervisor::Record(int attempt, const JobFault& fault) {
  coordinator::FailureRecord record;
  record.set_attempt(attempt);
  record.set_rank(fault.rank);
  record.set_host(fault.host);
  record.set_phase(fault.phase);
  record.set_step(fault.step);
  record.set_cause(fault.cause);
  coordinator_.RecordFailure(record);
  failures_.push_back(record);
  std::fprintf(stderr, "clipscale launch: attempt %d failed: %s\n", attempt,
               Describe(record).c_str());
}

void Supervisor::MaybeLeaveOut(const JobFault& fault) {
  if (fault.rank < 0 || o_.exclude_after <= 0) return;
  const std::string slot = hosts_.empty() ? absl::StrCat("rank ", fault.rank) : fault.host;
  const bool listed = hosts_.empty() || std::any_of(hosts_.begin(), hosts_.end(), [&](const auto& h) {
    return h.first == slot;
  });
  if (!listed) {
    // The rank's host name is not one of the hostfile's (an alias, or hosts
    // sharing a name): no host to leave out.
    std::fprintf(stderr, "clipscale launch: host '%s' is not named in %s: not counted for "
                 "launch.exclude_after\n", slot.c_str(), o_.hostfile.c_str());
    return;
  }
  if (++slot_failures_[slot] < o_.exclude_after || excluded_.count(slot)) return;
  int available = 0;
  if (hosts_.empty()) {
    available = o_.np - static_cast<int>(excluded_.size()) - 1;
  } else {
    for (const auto& [host, n] : hosts_) {
      if (!excluded_.count(host) && host != slot) available += n;
    }
  }
  const int shrunk = ShrunkWorldSize(std::min(available, world_), o_.global_batch);
  if (shrunk < 1) return;
  excluded_.insert(slot);
  world_ = shrunk;
  std::fprintf(stderr,
               "clipscale launch: %s failed %d times: leaving it out; the job goes on with %d "
               "rank(s) and the same global batch of %lld\n",
               slot.c_str(), slot_failures_[slot], shrunk, static_cast<long long>(o_.global_batch));
}

int Supervisor::GiveUp(int attempt, bool restartable) {
  coordinator_.EndAttempt("failed");
  WriteStatus(o_.status_path, coordinator_);
  std::fprintf(stderr, "clipscale launch: giving up after %d attempt(s)%s; failures:\n",
               attempt + 1,
               restartable ? " (launch.max_restarts)" : " (a restart would fail the same way)");
  for (const auto& f : failures_) {
    std::fprintf(stderr, "  attempt %d: %s\n", f.attempt(), Describe(f).c_str());
  }
  const coordinator::JobStatus status = coordinator_.Status();
  for (const auto& w : status.worst_shards()) {
    std::fprintf(stderr, "  bad samples: %lld in %s\n", static_cast<long long>(w.bad()),
                 w.shard().c_str());
  }
  return 1;
}

bool Supervisor::Backoff(int attempt) {
  const double wait =
      std::min(o_.backoff_max_s, o_.backoff_s * std::pow(2.0, static_cast<double>(attempt)));
  std::fprintf(stderr, "clipscale launch: restarting in %.1f s (restart %d of at most %lld)\n",
               wait, attempt + 1, static_cast<long long>(o_.max_restarts));
  const auto start = Clock::now();
  while (Since(start) < wait && g_signal.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  backoff_s_ = Since(start);
  return g_signal.load() == 0;
}

int Supervisor::Run() {
  for (int attempt = 0;; ++attempt) {
    auto point = StartingPoint(attempt);
    if (!point.ok()) {
      std::fprintf(stderr, "clipscale launch: error: %s\n",
                   std::string(point.status().message()).c_str());
      return 1;
    }
    AttemptPlan plan;
    plan.attempt = attempt;
    plan.world_size = world_;
    if (*point) {
      plan.resume_step = (*point)->step;
      plan.index_hash = (*point)->index_hash;
      plan.resume_dir = (*point)->dir;
    }
    coordinator_.BeginAttempt(plan);
    const std::string hostfile = Hostfile(attempt);
    std::fprintf(stderr, "clipscale launch: attempt %d: %d rank(s)%s%s\n", attempt, world_,
                 *point ? absl::StrCat(", resuming at step ", plan.resume_step, " from ",
                                       plan.resume_dir).c_str()
                        : ", from the start",
                 hostfile.empty() ? "" : (" on the hosts of " + hostfile).c_str());
    attempt_start_ = Clock::now();
    recovery_reported_ = attempt == 0;
    auto job = WorkerJob::Start(Command(attempt, *point, hostfile), Environment(attempt));
    if (!job.ok()) {
      std::fprintf(stderr, "clipscale launch: error: %s\n", std::string(job.status().message()).c_str());
      return 1;
    }
    const Outcome outcome = Watch(**job);
    const int status = *outcome.status;
    if (!outcome.fault && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      coordinator_.EndAttempt("finished");
      WriteStatus(o_.status_path, coordinator_);
      if (!failures_.empty()) {
        std::fprintf(stderr, "clipscale launch: finished after %zu restart(s)\n", failures_.size());
      }
      return 0;
    }
    if (outcome.stopped) {
      coordinator_.EndAttempt("stopped");
      WriteStatus(o_.status_path, coordinator_);
      std::fprintf(stderr, "clipscale launch: the job stopped on %s (%s)\n",
                   strsignal(g_signal.load()), DescribeExit(status).c_str());
      return StopCode(g_signal.load());
    }
    const JobFault fault = Explain(outcome, **job);
    Record(attempt, fault);
    MaybeLeaveOut(fault);
    if (!fault.restartable || attempt >= o_.max_restarts) return GiveUp(attempt, fault.restartable);
    coordinator_.EndAttempt("restarting");  // a rank still alive is told to stop
    WriteStatus(o_.status_path, coordinator_);
    KillSteps(/*wait_s=*/30);
    if (!Backoff(attempt)) {
      std::fprintf(stderr, "clipscale launch: %s received while waiting to restart: stopping\n",
                   strsignal(g_signal.load()));
      return StopCode(g_signal.load());
    }
  }
}

}  // namespace

int ShrunkWorldSize(int slots, int64_t global_batch) {
  for (int w = slots; w >= 1; --w) {
    if (global_batch % w == 0) return w;
  }
  return 0;
}

int Supervise(const SupervisorOptions& options, Coordinator& coordinator) {
  SignalScope signals;
  return Supervisor(options, coordinator).Run();
}

}  // namespace clipscale
