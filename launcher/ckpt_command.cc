// `clipscale ckpt inspect|verify|export`: what a checkpoint folder holds,
// whether it is intact, and its model weights alone for open_clip.
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "core/checkpoint_dir.h"
#include "core/file_util.h"
#include "core/status.h"
#include "launcher/commands.h"
#include "train/checkpoint.h"

namespace clipscale::launcher {
namespace {

namespace fs = std::filesystem;

struct CkptOptions {
  std::string path, out;
  bool config = false;
};

// A checkpoint folder, or a run's output or checkpoints folder (its `latest`).
std::string ResolvePath(const std::string& path) {
  for (const fs::path& root : {fs::path(path), fs::path(path) / "checkpoints"}) {
    if (auto step = ReadLatest(root.string())) return (root / CheckpointDirName(*step)).string();
  }
  return path;
}

void Report(const absl::Status& status, int code_on_error = 1) {
  if (status.ok()) return;
  std::fprintf(stderr, "clipscale: error: %s\n", std::string(status.message()).c_str());
  SetExitCode(code_on_error);
}

absl::Status RunInspect(const CkptOptions& o) {
  const std::string dir = ResolvePath(o.path);
  ASSIGN_OR_RETURN(const CheckpointManifest manifest, VerifyCheckpoint(dir));
  ASSIGN_OR_RETURN(const proto::CheckpointState s, ReadCheckpointState(dir));
  const std::time_t when = static_cast<std::time_t>(s.unix_time());
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&when));
  std::printf("checkpoint %s (verified)\n", dir.c_str());
  std::printf("  step %lld of %lld (next: epoch %lld, step %lld of it), seed %llu\n",
              static_cast<long long>(s.step()), static_cast<long long>(s.total_steps()),
              static_cast<long long>(s.epoch()), static_cast<long long>(s.step_in_epoch()),
              static_cast<unsigned long long>(s.seed()));
  std::printf("  world size %d, global batch %lld, micro-batch %lld\n", s.world_size(),
              static_cast<long long>(s.global_batch()), static_cast<long long>(s.micro_batch()));
  if (s.zero_world() > 0) {
    int64_t elements = 0;
    for (const auto& e : s.zero_layout()) elements += e.numel();
    std::printf("  optimizer: ZeRO-1 shards of %d rank(s), %lld of %lld trained elements each\n",
                s.zero_world(), static_cast<long long>(s.zero_shard_size()),
                static_cast<long long>(elements));
  }
  std::printf("  saved %s by clipscale %s after %.1f s of training\n", date,
              s.clipscale_version().c_str(), s.train_seconds());
  std::printf("  config hash %016llx, dataset index hash %016llx\n",
              static_cast<unsigned long long>(s.config_hash()),
              static_cast<unsigned long long>(s.index_hash()));
  std::printf("  files:\n");
  for (const ManifestEntry& f : manifest.files) {
    std::printf("    %-30s %12llu bytes  crc32c %08x\n", f.name.c_str(),
                static_cast<unsigned long long>(f.size), f.crc32c);
  }
  if (o.config) std::printf("config:\n%smodel:\n%s", s.config_yaml().c_str(), s.model_yaml().c_str());
  return absl::OkStatus();
}

absl::Status RunVerify(const CkptOptions& o) {
  const std::string dir = ResolvePath(o.path);
  ASSIGN_OR_RETURN(const CheckpointManifest manifest, VerifyCheckpoint(dir));
  ASSIGN_OR_RETURN(const proto::CheckpointState state, ReadCheckpointState(dir));
  std::printf("%s: OK (step %lld, %zu files, sizes and CRC32C match the manifest)\n", dir.c_str(),
              static_cast<long long>(state.step()), manifest.files.size());
  return absl::OkStatus();
}

absl::Status RunExport(const CkptOptions& o) {
  const std::string dir = ResolvePath(o.path);
  RETURN_IF_ERROR(VerifyCheckpoint(dir).status());
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile((fs::path(dir) / kModelFile).string()));
  RETURN_IF_ERROR(WriteFileAtomically(o.out, bytes));
  std::printf("%s -> %s (%zu bytes, OpenCLIP key names)\n", dir.c_str(), o.out.c_str(),
              bytes.size());
  return absl::OkStatus();
}

}  // namespace

void RegisterCkptCommand(CLI::App& app) {
  CLI::App* ckpt = app.add_subcommand("ckpt", "Checkpoint tools");
  ckpt->require_subcommand(1);
  auto o = std::make_shared<CkptOptions>();
  const char* path_help = "Checkpoint folder, or a run's output folder (its latest checkpoint)";
  CLI::App* inspect = ckpt->add_subcommand("inspect", "Step, job shape, config and files");
  inspect->add_option("path", o->path, path_help)->required();
  inspect->add_flag("--config", o->config, "Also print the recipe and model config");
  inspect->callback([o] { Report(RunInspect(*o)); });
  CLI::App* verify = ckpt->add_subcommand("verify", "Check every file against the manifest "
                                                    "(exit 0: intact, 1: not)");
  verify->add_option("path", o->path, path_help)->required();
  verify->callback([o] { Report(RunVerify(*o)); });
  CLI::App* exp = ckpt->add_subcommand("export", "Write the model weights alone (for open_clip)");
  exp->add_option("path", o->path, path_help)->required();
  exp->add_option("--out", o->out, "Output .safetensors")->required();
  exp->callback([o] { Report(RunExport(*o)); });
}

}  // namespace clipscale::launcher
