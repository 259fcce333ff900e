// `clipscale info`: what this build links and what it finds on this machine.
#include <cstdio>

#include "core/paths.h"
#include "distributed/backend_info.h"
#include "launcher/commands.h"

namespace clipscale::launcher {

void RegisterInfoCommand(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("info", "Print build and backend information");
  cmd->callback([] {
    BackendInfo info = QueryBackendInfo();
    std::printf("clipscale %s\n", CLIPSCALE_VERSION);
    std::printf("MPI:  %s\n", info.mpi_library.c_str());
    if (info.cuda_compiled) {
      std::printf("CUDA: compiled in; %d device(s)%s%s\n", info.cuda_devices,
                  info.cuda_error.empty() ? "" : ": ", info.cuda_error.c_str());
    } else {
      std::printf("CUDA: not compiled in\n");
    }
    std::printf("NCCL: %s\n", info.nccl_compiled ? info.nccl_version.c_str() : "not compiled in");
    for (const std::string& dir : DataSearchPath()) std::printf("data dir: %s\n", dir.c_str());
  });
}

}  // namespace clipscale::launcher
