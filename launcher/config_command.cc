// `clipscale config`: prints the effective model config (file + --set overrides).
#include <cstdio>

#include "core/config.h"
#include "launcher/commands.h"
#include "models/model_config.h"

namespace clipscale::launcher {

void RegisterConfigCommand(CLI::App& app) {
  struct Options {
    std::string model = "tiny";
    std::vector<std::string> overrides;
  };
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("config", "Print the effective model config as YAML");
  cmd->add_option("--model", options->model, "Model config name (configs/models) or YAML path")
      ->capture_default_str();
  cmd->add_option("--set", options->overrides, "Override key.path=value (repeatable)");
  cmd->callback([options] {
    auto config = LoadModelConfig(options->model, options->overrides);
    if (!config.ok()) {
      std::fprintf(stderr, "clipscale: error: %s\n", std::string(config.status().message()).c_str());
      SetExitCode(1);
      return;
    }
    std::fputs(ConfigToYaml(*config).c_str(), stdout);
  });
}

}  // namespace clipscale::launcher
