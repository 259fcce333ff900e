#include "launcher/commands.h"

namespace clipscale::launcher {
namespace {
int g_exit_code = 0;
}  // namespace

int ExitCode() { return g_exit_code; }
void SetExitCode(int code) { g_exit_code = code; }

void RegisterCommands(CLI::App& app) {
  RegisterInfoCommand(app);
  RegisterInferenceCommands(app);
  RegisterConfigCommand(app);
  RegisterDataCommand(app);
  RegisterTrainCommands(app);
  RegisterCkptCommand(app);
  RegisterLaunchCommands(app);
  RegisterSlurmCommand(app);
}

}  // namespace clipscale::launcher
