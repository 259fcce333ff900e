// The clipscale command line: one subcommand per job. Under a launcher that
// starts several ranks (mpirun, srun, ...) main owns MPI for the whole run.
#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "core/malloc_tuning.h"
#include "core/status.h"
#include "distributed/launch_env.h"
#include "distributed/mpi_runtime.h"
#include "launcher/commands.h"
#include "train/stop_signal.h"

namespace {

// MPI is started when a launcher says this process is one of several ranks,
// or is an Open MPI/PMI rank at all (mpirun -np 1); a plain process runs
// without it, as one local rank.
bool WantMpi() {
  auto env = clipscale::ParseLaunchEnv(clipscale::ProcessEnvironment());
  if (!env.ok()) return false;  // the communicator factory reports the bad variable
  clipscale::SetFatalErrorRank(env->rank);  // MPI, once started, confirms it
  return env->world_size > 1 || env->launcher == "openmpi" || env->launcher == "pmi";
}

// An exception nobody caught ends the process as a failed CHECK does: with
// this rank's number in the message (mpirun then ends the other ranks).
[[noreturn]] void OnTerminate() {
  std::string what = "uncaught exception";
  if (std::exception_ptr error = std::current_exception()) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = what + ": " + e.what();
    } catch (...) {
    }
  }
  clipscale::FatalError(__FILE__, __LINE__, what);
}

}  // namespace

int main(int argc, char** argv) {
  std::set_terminate(OnTerminate);
  // First, before MPI or any thread allocates: a step's freed tensors stay in
  // the process for the next step instead of being page-faulted in again.
  (void)clipscale::KeepFreedMemoryForReuse();
  std::unique_ptr<clipscale::MpiRuntime> mpi;
  if (WantMpi()) {
    auto runtime = clipscale::MpiRuntime::Init(&argc, &argv);
    if (!runtime.ok()) {
      std::fprintf(stderr, "clipscale: error: %s\n", std::string(runtime.status().message()).c_str());
      return 1;
    }
    mpi = std::move(*runtime);
  }
  CLI::App app{"clipscale: data-parallel CLIP training and inference"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show the help of every subcommand");
  app.get_formatter()->column_width(36);
  clipscale::launcher::RegisterCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const int code = clipscale::launcher::ExitCode();
  // A failed rank must not wait in MPI_Finalize for ranks that may be blocked
  // in a collective with it. A run stopped by a signal stopped on every rank
  // at the same step boundary, after its save: it finalizes normally.
  const bool agreed_stop =
      code == clipscale::kExitRequeue || code == clipscale::kExitInterrupted;
  if (code != 0 && !agreed_stop && mpi && mpi->world_size() > 1) {
    std::fprintf(stderr, "clipscale: rank %d of %d failed (exit %d): ending the whole job\n",
                 mpi->world_rank(), mpi->world_size(), code);
    mpi->Abort(code);
  }
  return code;
}
