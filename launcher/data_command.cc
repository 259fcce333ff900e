// `clipscale data synth`: writes the embedded demo dataset.
#include <cstdio>

#include "data/synth.h"
#include "launcher/commands.h"

namespace clipscale::launcher {

void RegisterDataCommand(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Dataset tools");
  data->require_subcommand(1);
  auto options = std::make_shared<SynthOptions>();
  CLI::App* synth = data->add_subcommand(
      "synth", "Write the demo dataset: drawn scenes with captions as WebDataset shards");
  synth->add_option("--out", options->out, "Output folder (train/ and val/ inside)")->required();
  synth->add_option("--train", options->train, "Training samples")->capture_default_str();
  synth->add_option("--val", options->val, "Held-out samples (with class labels)")
      ->capture_default_str();
  synth->add_option("--seed", options->seed, "Seed; same arguments give identical bytes")
      ->capture_default_str();
  synth->add_option("--image-size", options->image_size, "Image side in pixels")
      ->capture_default_str();
  synth->add_option("--per-shard", options->per_shard, "Samples per .tar shard")
      ->capture_default_str();
  synth->add_option("--jpeg-quality", options->jpeg_quality, "JPEG quality")
      ->capture_default_str();
  synth->callback([options] {
    absl::Status status = WriteSynthDataset(*options);
    if (!status.ok()) {
      std::fprintf(stderr, "clipscale: error: %s\n", std::string(status.message()).c_str());
      SetExitCode(1);
      return;
    }
    std::printf("wrote %lld train and %lld val samples to %s\n",
                static_cast<long long>(options->train), static_cast<long long>(options->val),
                options->out.c_str());
  });
}

}  // namespace clipscale::launcher
