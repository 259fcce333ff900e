#include "launcher/coordinator/worker_job.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"

namespace clipscale {
namespace {

// Every live process of the session `sid`.
std::vector<pid_t> SessionMembers(pid_t sid) {
  std::vector<pid_t> pids;
  DIR* proc = ::opendir("/proc");
  if (!proc) return pids;
  while (dirent* entry = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    auto stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
    if (!stat.ok()) continue;  // gone meanwhile
    const std::string& text = *stat;
    const size_t close = text.rfind(')');
    if (close == std::string::npos || close + 2 >= text.size()) continue;
    // After "(comm)": state ppid pgrp session ...; a zombie is dead already.
    const std::vector<std::string> fields = absl::StrSplit(text.substr(close + 2), ' ');
    int session = 0;
    if (fields.size() > 3 && fields[0] != "Z" && absl::SimpleAtoi(fields[3], &session) &&
        session == sid) {
      pids.push_back(pid);
    }
  }
  ::closedir(proc);
  return pids;
}

// What mpirun says when it cannot start or reach its daemon on a host: no
// rank is named, but the host is.
void ScanHostTrouble(const std::string& line, bool* tcp_block, MpirunVerdict* verdict) {
  static const std::regex local_re(R"(Local host:\s+(\S+))");
  static const std::regex ssh_re(R"(ssh: connect to host (\S+) port \d+: (.*\S))");
  std::smatch m;
  if (line.find("unable to complete a TCP connection") != std::string::npos) {
    *tcp_block = true;
  } else if (*tcp_block && std::regex_search(line, m, local_re)) {
    *tcp_block = false;
    if (verdict->host.empty()) {
      verdict->host = m[1];
      verdict->what = absl::StrCat("mpirun's daemon on ", m[1].str(),
                                   " could not connect back over TCP (a host cut off, a "
                                   "firewall, or the wrong btl/oob_tcp_if_include network)");
    }
  } else if (line.find("ssh: connect to host") != std::string::npos &&
             std::regex_search(line, m, ssh_re) && verdict->host.empty()) {
    verdict->host = m[1];
    verdict->what = absl::StrCat("mpirun cannot reach ", m[1].str(), " (ssh: ", m[2].str(), ")");
  } else if (line.find("ORTE was unable to reliably start one or more daemons") !=
                 std::string::npos &&
             verdict->what.empty()) {
    verdict->what = "mpirun could not start its daemon on every host (a host unreachable, or "
                    "its rsh/ssh agent failing)";
  }
}

void Scan(const std::string& line, MpirunVerdict* verdict) {
  static const std::regex signal_re(
      R"(process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+) \(([^)]*)\))");
  static const std::regex abort_re(R"(MPI_ABORT was invoked on rank (\d+))");
  static const std::regex name_re(R"(Process name:\s+\[\[\d+,\d+\],(\d+)\])");
  // srun: "srun: error: node7: task 3: Exited with exit code 1" ("tasks 2-3: Killed").
  static const std::regex srun_re(R"(srun: error: (\S+): tasks? (\d+)[-,\d]*: (.+))");
  if (verdict->rank >= 0) return;  // the first one is the cause
  std::smatch m;
  if (line.find("exited on signal") != std::string::npos && std::regex_search(line, m, signal_re)) {
    verdict->rank = std::stoi(m[1]);
    verdict->host = m[2];
    verdict->what = absl::StrCat("killed by signal ", m[3].str(), " (", m[4].str(), ")");
  } else if (line.find("MPI_ABORT") != std::string::npos && std::regex_search(line, m, abort_re)) {
    verdict->rank = std::stoi(m[1]);
    verdict->what = "ended the job with MPI_Abort";
  } else if (line.find("srun: error:") != std::string::npos &&
             std::regex_search(line, m, srun_re)) {
    verdict->rank = std::stoi(m[2]);
    verdict->host = m[1];
    verdict->what = m[3].str();
    while (!verdict->what.empty() && std::isspace(static_cast<unsigned char>(verdict->what.back()))) {
      verdict->what.pop_back();
    }
  } else if (line.find("Process name") != std::string::npos &&
             std::regex_search(line, m, name_re)) {
    verdict->rank = std::stoi(m[1]);
    verdict->what = "exited with a non-zero status";
  }
}

}  // namespace

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return "ended";
}

absl::StatusOr<std::unique_ptr<WorkerJob>> WorkerJob::Start(const std::vector<std::string>& argv,
                                                            const std::vector<std::string>& env) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
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
    (void)!::write(2, kMessage, sizeof(kMessage) - 1);
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  std::unique_ptr<WorkerJob> job(new WorkerJob());
  job->pid_ = pid;
  WorkerJob* j = job.get();
  job->out_ = std::thread([j, fd = out[0]] { j->Pump(fd, stdout); });
  job->err_ = std::thread([j, fd = err[0]] { j->Pump(fd, stderr); });
  return job;
}

WorkerJob::~WorkerJob() {
  if (!status_) TearDown();
  Finish();
}

void WorkerJob::Pump(int fd, FILE* to) {
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
      std::lock_guard<std::mutex> lock(mu_);
      Scan(line, &verdict_);
      if (verdict_.rank < 0) ScanHostTrouble(line, &tcp_block_, &verdict_);
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

std::optional<int> WorkerJob::Poll() {
  if (status_) return status_;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
  return status_;
}

void WorkerJob::Signal(int signal) {
  if (!status_) ::kill(pid_, signal);
}

int WorkerJob::TearDown(const std::function<void()>& first, double grace_s) {
  if (first && !Poll()) {
    first();
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
    while (!Poll() && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  for (int round = 0; round < 50; ++round) {
    const std::vector<pid_t> members = SessionMembers(pid_);
    if (members.empty()) break;
    for (pid_t pid : members) ::kill(pid, SIGKILL);
    Poll();  // reaps mpirun once it is dead
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!status_) {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    status_ = status;
  }
  return *status_;
}

void WorkerJob::Finish() {
  for (pid_t pid : SessionMembers(pid_)) ::kill(pid, SIGKILL);
  if (out_.joinable()) out_.join();
  if (err_.joinable()) err_.join();
}

MpirunVerdict WorkerJob::verdict() {
  std::lock_guard<std::mutex> lock(mu_);
  return verdict_;
}

}  // namespace clipscale
