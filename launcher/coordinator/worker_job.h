// The worker job as processes: `mpirun` started in a session of its own, its
// output copied to ours line by line (and read for mpirun's word on the rank
// it lost), and torn down by killing every process of that session, wherever
// mpirun's children were reparented, a SIGSTOPped rank included.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

// What mpirun printed about the first rank it lost.
struct MpirunVerdict {
  int rank = -1;  // -1: it named none
  std::string host;  // also without a rank: the host whose daemon it could not start or reach
  std::string what;  // "killed by signal 9 (Killed)", "ended the job with MPI_Abort", ...
};

class WorkerJob {
 public:
  // Starts argv (argv[0] found on PATH) with exactly `env`.
  static absl::StatusOr<std::unique_ptr<WorkerJob>> Start(const std::vector<std::string>& argv,
                                                          const std::vector<std::string>& env);
  ~WorkerJob();  // tears down what still runs

  // The wait status once mpirun exited (nullopt while it runs).
  std::optional<int> Poll();
  void Signal(int signal);  // to mpirun (it forwards SIGUSR1 to the ranks)
  // SIGKILL to every process of the session, then reaps mpirun; returns its wait status.
  // `first`, when given, runs before and gets up to `grace_s` for the launcher
  // to exit by itself (srun: the step's tasks are killed through Slurm, so
  // srun hears of their end; a SIGKILLed srun leaves its step to linger).
  int TearDown(const std::function<void()>& first = nullptr, double grace_s = 0);
  // After mpirun exited: kills whatever it left behind, and waits for its output.
  void Finish();
  MpirunVerdict verdict();

 private:
  WorkerJob() = default;
  void Pump(int fd, FILE* to);

  pid_t pid_ = -1;
  std::optional<int> status_;
  std::thread out_, err_;
  std::mutex mu_;
  MpirunVerdict verdict_;
  bool tcp_block_ = false;  // inside mpirun's "unable to complete a TCP connection" text
};

// "exit status 1", "killed by signal 9".
std::string DescribeExit(int wait_status);

}  // namespace clipscale
