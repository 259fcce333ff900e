#include "launcher/coordinator/supervisor.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"

extern char** environ;

namespace clipscale {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// --- the launch's own signals: forwarded to the job as a request to save and stop.
std::atomic<int> g_signal{0};
extern "C" void OnSignal(int signal) {
  if (g_signal.load() == 0) g_signal.store(signal);
}

class SignalScope {
 public:
  SignalScope() {
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

// --- what mpirun says about the rank it lost.
struct MpirunVerdict {
  std::mutex mu;
  int rank = -1;
  std::string host;
  std::string what;
};

void Scan(const std::string& line, MpirunVerdict* verdict) {
  static const std::regex signal_re(
      R"(process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+) \(([^)]*)\))");
  static const std::regex abort_re(R"(MPI_ABORT was invoked on rank (\d+))");
  static const std::regex name_re(R"(Process name:\s+\[\[\d+,\d+\],(\d+)\])");
  std::smatch m;
  std::lock_guard<std::mutex> lock(verdict->mu);
  if (verdict->rank >= 0) return;  // the first one is the cause
  if (line.find("exited on signal") != std::string::npos && std::regex_search(line, m, signal_re)) {
    verdict->rank = std::stoi(m[1]);
    verdict->host = m[2];
    verdict->what = absl::StrCat("killed by signal ", m[3].str(), " (", m[4].str(), ")");
  } else if (line.find("MPI_ABORT") != std::string::npos &&
             std::regex_search(line, m, abort_re)) {
    verdict->rank = std::stoi(m[1]);
    verdict->what = "ended the job with MPI_Abort";
  } else if (line.find("Process name") != std::string::npos &&
             std::regex_search(line, m, name_re)) {
    verdict->rank = std::stoi(m[1]);
    verdict->what = "exited with a non-zero status";
  }
}

// Copies the job's output to ours line by line, looking for mpirun's verdict.
void Pump(int fd, FILE* to, MpirunVerdict* verdict) {
  std::string pending;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buffer, static_cast<size_t>(n));
    size_t start = 0, end;
    while ((end = pending.find('\n', start)) != std::string::npos) {
      const std::string line = pending.substr(start, end - start + 1);
      std::fwrite(line.data(), 1, line.size(), to);
      std::fflush(to);
      Scan(line, verdict);
      start = end + 1;
    }
    pending.erase(0, start);
  }
  if (!pending.empty()) {
    std::fwrite(pending.data(), 1, pending.size(), to);
    std::fflush(to);
  }
  ::close(fd);
}

struct Job {
  pid_t pid = -1;
  std::thread out, err;
  MpirunVerdict verdict;
};

// Starts `argv` in a new session with `env`; its output goes through Pump.
absl::Status Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                   Job* job) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<char*> args, envp;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::setsid();
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execvpe(args[0], args.data(), envp.data());
    static const char kMessage[] = "clipscale launch: cannot execute the worker launcher\n";
    ssize_t ignored = ::write(2, kMessage, sizeof(kMessage) - 1);
    (void)ignored;
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  job->pid = pid;
  job->out = std::thread(Pump, out[0], stdout, &job->verdict);
  job->err = std::thread(Pump, err[0], stderr, &job->verdict);
  return absl::OkStatus();
}

// Every process of the session `sid` (the job's mpirun and whatever it
// started, wherever it was reparented).
std::vector<pid_t> SessionMembers(pid_t sid) {
  std::vector<pid_t> pids;
  DIR* proc = ::opendir("/proc");
  if (!proc) return pids;
  while (dirent* entry = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const size_t close = text.rfind(')');
    if (close == std::string::npos) continue;
    // After "(comm)": state ppid pgrp session ...
    std::vector<std::string> fields = absl::StrSplit(text.substr(close + 2), ' ');
    int session = 0;
    // A zombie is dead already; its parent (or init) reaps it.
    if (fields.size() > 3 && fields[0] != "Z" && absl::SimpleAtoi(fields[3], &session) &&
        session == sid) {
      pids.push_back(pid);
    }
  }
  ::closedir(proc);
  return pids;
}

// SIGKILL to the whole session (a SIGSTOPped rank dies too), then reaps mpirun.
int TearDown(Job* job) {
  for (int round = 0; round < 50; ++round) {
    const std::vector<pid_t> members = SessionMembers(job->pid);
    if (members.empty()) break;
    for (pid_t pid : members) ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(job->pid, &status, WNOHANG);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  int status = 0;
  ::waitpid(job->pid, &status, 0);
  return status;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return "ended";
}

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
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.empty()) continue;
    int slots = 1;
    for (const std::string& w : words) {
      if (w.rfind("slots=", 0) == 0) absl::SimpleAtoi(w.substr(6), &slots);
    }
    hosts.emplace_back(words[0], slots);
  }
  return hosts;
}

struct Slots {
  std::map<std::string, int> failures;  // by slot key: a host, or "rank R" on one machine
  std::set<std::string> excluded;
};

}  // namespace

int ShrunkWorldSize(int slots, int64_t global_batch) {
  for (int w = slots; w >= 1; --w) {
    if (global_batch % w == 0) return w;
  }
  return 0;
}

int Supervise(const SupervisorOptions& o, Coordinator& coordinator) {
  SignalScope signals;
  const std::string launcher_mpirun = "mpirun";
  const auto hosts = o.hostfile.empty() ? std::vector<std::pair<std::string, int>>()
                                        : ReadHostfile(o.hostfile);
  Slots slots;
  int world = o.np;
  std::optional<Clock::time_point> fault_at;  // the last failure, for the recovery time
  double backoff_waited = 0, teardown_s = 0;
  std::vector<coordinator::FailureRecord> failures;
  for (int attempt = 0;; ++attempt) {
    // Where this attempt starts.
    const std::string resume = attempt == 0 ? o.first_resume : "latest";
    std::optional<ResumePoint> point;
    if (!resume.empty()) {
      auto resolved = o.resolve(resume);
      if (!resolved.ok()) {
        std::fprintf(stderr, "clipscale launch: error: %s\n",
                     std::string(resolved.status().message()).c_str());
        return 1;
      }
      point = *resolved;
    }
    AttemptPlan plan;
    plan.attempt = attempt;
    plan.world_size = world;
    if (point) {
      plan.resume_step = point->step;
      plan.index_hash = point->index_hash;
      plan.resume_dir = point->dir;
    }
    coordinator.BeginAttempt(plan);
    // The worker job.
    std::vector<std::string> argv = {launcher_mpirun};
    if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
    argv.insert(argv.end(), {"-np", std::to_string(world)});
    std::string hostfile = o.hostfile;
    if (!hosts.empty() && !slots.excluded.empty()) {
      hostfile = absl::StrCat(o.status_path, ".hostfile.", attempt);
      std::string text;
      for (const auto& [host, n] : hosts) {
        if (!slots.excluded.count(host)) absl::StrAppend(&text, host, " slots=", n, "\n");
      }
      (void)WriteFileAtomically(hostfile, text);
    }
    if (!hostfile.empty()) {
      argv.insert(argv.end(), {"--hostfile", hostfile});
    } else {
      argv.push_back("--oversubscribe");  // one machine: more ranks than cores is a test's choice
    }
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      if (std::strncmp(*e, "CLIPSCALE_ATTEMPT=", 18) != 0) env.push_back(*e);
    }
    env.push_back(absl::StrCat("CLIPSCALE_COORDINATOR=", coordinator.address()));
    env.push_back(absl::StrCat("CLIPSCALE_JOB_ID=", coordinator.options().job_id));
    env.push_back(absl::StrCat("CLIPSCALE_JOB_TOKEN=", coordinator.options().token));
    env.push_back(absl::StrCat("CLIPSCALE_ATTEMPT=", attempt));
    for (const char* name : {"CLIPSCALE_COORDINATOR", "CLIPSCALE_JOB_ID", "CLIPSCALE_JOB_TOKEN",
                             "CLIPSCALE_ATTEMPT"}) {
      argv.insert(argv.end(), {"-x", name});
    }
    for (const std::string& name : o.forward_env) argv.insert(argv.end(), {"-x", name});
    argv.insert(argv.end(), o.mpirun_args.begin(), o.mpirun_args.end());
    argv.insert(argv.end(), {o.binary, "train"});
    argv.insert(argv.end(), o.train_args.begin(), o.train_args.end());
    if (point) argv.insert(argv.end(), {"--resume", point->dir.empty() ? resume : point->dir});
    if (world != o.np && o.micro_batch == 0 && o.global_batch / world > o.global_batch / o.np) {
      // Fewer ranks, larger shares: gradient caching keeps each encoder pass
      // at the original per-rank size.
      argv.insert(argv.end(), {"--set", absl::StrCat("data.micro_batch_size=", o.global_batch / o.np)});
    }
    std::fprintf(stderr, "clipscale launch: attempt %d: %d rank(s)%s%s\n", attempt, world,
                 point ? absl::StrCat(", resuming at step ", point->step, " from ", point->dir).c_str()
                       : ", from the start",
                 hostfile.empty() ? "" : (" on the hosts of " + hostfile).c_str());
    const auto attempt_start = Clock::now();
    Job job;
    if (absl::Status started = Spawn(argv, env, &job); !started.ok()) {
      std::fprintf(stderr, "clipscale launch: error: %s\n", std::string(started.message()).c_str());
      return 1;
    }
    // Watch it.
    std::optional<JobFault> fault;
    int status = 0;
    bool exited = false, forwarded = false, recovery_reported = attempt == 0;
    auto last_status_write = Clock::now() - std::chrono::seconds(10);
    while (true) {
      const pid_t done = ::waitpid(job.pid, &status, WNOHANG);
      if (done == job.pid) {
        exited = true;
        break;
      }
      if (g_signal.load() != 0 && !forwarded) {
        // Ranks save at the next step boundary and exit 75 (requeue).
        std::fprintf(stderr, "clipscale launch: %s received: asking the job to save and stop\n",
                     strsignal(g_signal.load()));
        ::kill(job.pid, SIGUSR1);
        forwarded = true;
      }
      if (!forwarded) fault = coordinator.Check();
      if (fault) break;
      if (!recovery_reported && fault_at) {
        if (auto first = coordinator.FirstStepSeconds()) {
          const double total = std::chrono::duration<double>(attempt_start - *fault_at).count() + *first;
          const double joined = coordinator.JoinedSeconds().value_or(*first);
          coordinator.SetRecoverySeconds(total);
          std::fprintf(stderr,
                       "clipscale launch: recovered: the first step after the restart ended "
                       "%.1f s after the failure was detected (tear-down %.1f s, backoff %.1f s, start-up and "
                       "join %.1f s, first step %.1f s)\n",
                       total, teardown_s, backoff_waited, joined, *first - joined);
          recovery_reported = true;
        }
      }
      if (Since(last_status_write) >= 1) {
        WriteStatus(o.status_path, coordinator);
        last_status_write = Clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const auto failed_at = Clock::now();
    if (fault) status = TearDown(&job);
    if (!fault) {
      // mpirun is gone; anything it left behind in its session goes too.
      for (pid_t pid : SessionMembers(job.pid)) ::kill(pid, SIGKILL);
    }
    job.out.join();
    job.err.join();
    teardown_s = Since(failed_at);
    const int code = exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (exited && code == 0) {
      coordinator.EndAttempt("finished");
      WriteStatus(o.status_path, coordinator);
      if (!failures.empty()) {
        std::fprintf(stderr, "clipscale launch: finished after %zu restart(s)\n", failures.size());
      }
      return 0;
    }
    if (forwarded) {
      coordinator.EndAttempt("stopped");
      WriteStatus(o.status_path, coordinator);
      const int signal = g_signal.load();
      std::fprintf(stderr, "clipscale launch: the job stopped on %s (%s)\n", strsignal(signal),
                   DescribeExit(status).c_str());
      return signal == SIGINT ? 130 : 75;
    }
    // A failure: who, where, why.
    if (!fault) {
      std::lock_guard<std::mutex> lock(job.verdict.mu);
      fault = coordinator.Diagnose(job.verdict.rank);
      if (fault->cause.empty() && fault->rank == job.verdict.rank) fault->cause = job.verdict.what;
      if (fault->host.empty()) fault->host = job.verdict.host;
      const std::string exit = absl::StrCat("the job ended with ", DescribeExit(status));
      fault->cause = fault->cause.empty() ? exit : absl::StrCat(fault->cause, "; ", exit);
    }
    fault_at = failed_at;
    coordinator::FailureRecord record;
    record.set_attempt(attempt);
    record.set_rank(fault->rank);
    record.set_host(fault->host);
    record.set_phase(fault->phase);
    record.set_step(fault->step);
    record.set_cause(fault->cause);
    coordinator.RecordFailure(record);
    failures.push_back(record);
    std::fprintf(stderr,
                 "clipscale launch: attempt %d failed: rank %s%s (last seen in %s at step %lld): "
                 "%s\n",
                 attempt, fault->rank >= 0 ? std::to_string(fault->rank).c_str() : "?",
                 fault->host.empty() ? "" : (" on " + fault->host).c_str(),
                 fault->phase.empty() ? "?" : fault->phase.c_str(),
                 static_cast<long long>(fault->step), fault->cause.c_str());
    // Slots that keep failing are left out.
    if (fault->rank >= 0 && o.exclude_after > 0) {
      const std::string slot = hosts.empty() ? absl::StrCat("rank ", fault->rank) : fault->host;
      if (++slots.failures[slot] >= o.exclude_after && !slots.excluded.count(slot)) {
        int available = 0;
        if (hosts.empty()) {
          available = o.np - static_cast<int>(slots.excluded.size()) - 1;
        } else {
          for (const auto& [host, n] : hosts) {
            if (!slots.excluded.count(host) && host != slot) available += n;
          }
        }
        const int shrunk = ShrunkWorldSize(std::min(available, world), o.global_batch);
        if (shrunk >= 1) {
          slots.excluded.insert(slot);
          std::fprintf(stderr,
                       "clipscale launch: %s failed %d times: leaving it out; the job goes on "
                       "with %d rank(s) and the same global batch of %lld\n",
                       slot.c_str(), slots.failures[slot], shrunk,
                       static_cast<long long>(o.global_batch));
          world = shrunk;
        }
      }
    }
    const bool restartable = fault->restartable;
    if (!restartable || attempt >= o.max_restarts) {
      coordinator.EndAttempt("failed");
      WriteStatus(o.status_path, coordinator);
      std::fprintf(stderr, "clipscale launch: giving up after %d attempt(s)%s; failures:\n",
                   attempt + 1, restartable ? " (launch.max_restarts)" : " (a restart would fail the same way)");
      for (const auto& f : failures) {
        std::fprintf(stderr, "  attempt %d: rank %s%s (last seen in %s at step %lld): %s\n",
                     f.attempt(),
                     f.rank() >= 0 ? std::to_string(f.rank()).c_str() : "?",
                     f.host().empty() ? "" : (" on " + f.host()).c_str(),
                     f.phase().empty() ? "?" : f.phase().c_str(),
                     static_cast<long long>(f.step()), f.cause().c_str());
      }
      for (const auto& w : coordinator.Status().worst_shards()) {
        std::fprintf(stderr, "  bad samples: %lld in %s\n", static_cast<long long>(w.bad()),
                     w.shard().c_str());
      }
      return 1;
    }
    coordinator.EndAttempt("restarting");
    WriteStatus(o.status_path, coordinator);
    const double backoff =
        std::min(o.backoff_max_s, o.backoff_s * std::pow(2.0, static_cast<double>(attempt)));
    std::fprintf(stderr, "clipscale launch: restarting in %.1f s (restart %d of at most %lld)\n",
                 backoff, attempt + 1, static_cast<long long>(o.max_restarts));
    const auto wait_start = Clock::now();
    while (Since(wait_start) < backoff && g_signal.load() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff_waited = Since(wait_start);
    if (g_signal.load() != 0) {
      std::fprintf(stderr, "clipscale launch: %s received while waiting to restart: stopping\n",
                   strsignal(g_signal.load()));
      return g_signal.load() == SIGINT ? 130 : 75;
    }
  }
}

}  // namespace clipscale
