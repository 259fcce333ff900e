// Subcommand registration; each command lives in its own file.
#pragma once

#include "CLI/CLI.hpp"

namespace clipscale::launcher {

void RegisterCommands(CLI::App& app);
void RegisterInfoCommand(CLI::App& app);
void RegisterInferenceCommands(CLI::App& app);
void RegisterConfigCommand(CLI::App& app);
void RegisterDataCommand(CLI::App& app);
void RegisterTrainCommands(CLI::App& app);
void RegisterCkptCommand(CLI::App& app);
void RegisterLaunchCommands(CLI::App& app);  // launch, status
void RegisterSlurmCommand(CLI::App& app);

// Exit status of the command that ran (set by its callback).
int ExitCode();
void SetExitCode(int code);

}  // namespace clipscale::launcher
