// The clipscale command line: one subcommand per job. Under a launcher that
// starts several ranks (mpirun, srun, ...) main owns MPI for the whole run.
#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "distributed/launch_env.h"
#include "distributed/mpi_runtime.h"
#include "launcher/commands.h"

namespace {

// MPI is started when a launcher says this process is one of several ranks,
// or is an Open MPI/PMI rank at all (mpirun -np 1); a plain process runs
// without it, as one local rank.
bool WantMpi() {
  auto env = clipscale::ParseLaunchEnv(clipscale::ProcessEnvironment());
  if (!env.ok()) return false;  // the communicator factory reports the bad variable
  return env->world_size > 1 || env->launcher == "openmpi" || env->launcher == "pmi";
}

}  // namespace

int main(int argc, char** argv) {
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
  // in a collective with it.
  if (code != 0 && mpi && mpi->world_size() > 1) mpi->Abort(code);
  return code;
}
