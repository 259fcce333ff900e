// The clipscale command line: one subcommand per job.
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "launcher/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"clipscale: data-parallel CLIP training and inference"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show the help of every subcommand");
  app.get_formatter()->column_width(36);
  clipscale::launcher::RegisterCommands(app);
  CLI11_PARSE(app, argc, argv);
  return clipscale::launcher::ExitCode();
}
