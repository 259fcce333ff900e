// `clipscale data synth` (the embedded demo dataset) and `clipscale data
// index` (the dataset index the streaming loader reads).
#include <cstdio>

#include "data/dataset_index.h"
#include "core/status.h"
#include "data/synth.h"
#include "launcher/commands.h"

namespace clipscale::launcher {
namespace {

struct IndexOptions {
  std::string spec, out;
  int threads = 0;
};

absl::Status RunIndex(const IndexOptions& o) {
  IndexBuildOptions build;
  build.threads = o.threads;
  RETURN_IF_ERROR(DatasetIndex::Build(o.spec, o.out, build));
  ASSIGN_OR_RETURN(auto index, DatasetIndex::Open(o.out));
  const IndexDropCounts dropped = index->dropped();
  std::printf("%s: %lld samples in %zu shards from %zu source(s), hash %016llx\n", o.out.c_str(),
              static_cast<long long>(index->total_samples()), index->shards().size(),
              index->sources().size(), static_cast<unsigned long long>(index->hash()));
  std::printf("dropped: %lld samples without an image, %lld repeated members; "
              "%lld truncated and %lld unreadable shards\n",
              static_cast<long long>(dropped.incomplete_samples),
              static_cast<long long>(dropped.duplicate_members),
              static_cast<long long>(dropped.truncated_shards),
              static_cast<long long>(dropped.unreadable_shards));
  return absl::OkStatus();
}

}  // namespace

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
  synth->add_option("--backgrounds", options->variety.backgrounds,
                    "Backgrounds drawn (the first N of grey, white, black)")
      ->capture_default_str();
  synth->add_option("--sizes", options->variety.sizes, "Object sizes drawn (1: small, 2: small and large)")
      ->capture_default_str();
  synth->add_option("--max-objects", options->variety.max_objects, "Objects per scene: 1 to N")
      ->capture_default_str();
  synth->add_flag("--varied-captions", options->variety.varied_captions,
                  "Captions mention count, size and background each with probability 1/2");
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

  auto index = std::make_shared<IndexOptions>();
  CLI::App* i = data->add_subcommand(
      "index", "Scan shards once and write the dataset index that training and eval read");
  i->add_option("spec", index->spec, "Shard spec: folder, file, dir/{00000..00099}.tar, a::b")
      ->required();
  i->add_option("--out", index->out, "Index file to write (e.g. laion.index)")->required();
  i->add_option("--threads", index->threads, "Shards scanned in parallel (0: all cores)")
      ->capture_default_str();
  i->callback([index] {
    absl::Status status = RunIndex(*index);
    if (!status.ok()) {
      std::fprintf(stderr, "clipscale: error: %s\n", std::string(status.message()).c_str());
      SetExitCode(1);
    }
  });
}

}  // namespace clipscale::launcher
