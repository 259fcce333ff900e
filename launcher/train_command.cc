// `clipscale train` and `clipscale eval`.
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/status.h"
#include "data/dataset_index.h"
#include "distributed/launch_env.h"
#include "launcher/commands.h"
#include "launcher/coordinator/coordinator_client.h"
#include "launcher/model_loading.h"
#include "train/evaluate.h"
#include "train/train_data.h"
#include "train/stop_signal.h"
#include "train/trainer.h"
#include "train/zeroshot.h"

namespace clipscale::launcher {
namespace {

struct TrainOptions {
  std::string config;
  std::vector<std::string> overrides;
  std::string resume;
  bool resume_ignore_config = false;
};

struct EvalCommandOptions {
  ModelOptions model;
  std::string run, data, classnames, bpe, index_cache, shard_cache;
  std::vector<std::string> templates;  // default: the split's file, else "a photo of a {}."
  int64_t batch_size = 256;
  int workers = 0;
};

void PrintMetrics(const std::map<std::string, double>& metrics) {
  for (const auto& [name, value] : metrics) std::printf("  %-32s %.4f\n", name.c_str(), value);
}

// The two numbers a newcomer looks for, next to what guessing would give.
void PrintSummary(const std::map<std::string, double>& m) {
  auto line = [&](const char* what, const std::string& key, const std::string& chance_key) {
    if (!m.count(key) || !m.count(chance_key)) return;
    std::printf("%-26s %6.1f%%   (chance %.1f%%, %.1fx chance)\n", what, 100 * m.at(key),
                100 * m.at(chance_key), m.at(key) / m.at(chance_key));
  };
  line("zero-shot top-1:", "zeroshot_top1", "zeroshot_chance_top1");
  line("retrieval image->text R@1:", "image_to_text_R@1", "retrieval_chance_R@1");
  line("retrieval text->image R@1:", "text_to_image_R@1", "retrieval_chance_R@1");
}

// Whether starting the job again could end differently: not for a bad recipe,
// missing data or too many non-finite steps (the restart would replay them).
bool Restartable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kOutOfRange:
      return false;
    default:
      return true;
  }
}

absl::Status RunTrainWith(const TrainOptions& o, JobControl* job) {
  std::vector<std::string> overrides = o.overrides;
  if (!o.resume.empty()) overrides.push_back("resume=" + o.resume);
  if (o.resume_ignore_config) overrides.push_back("resume_ignore_config=true");
  ASSIGN_OR_RETURN(TrainConfig config, LoadTrainConfig(o.config, overrides));
  ASSIGN_OR_RETURN(TrainResult result, Train(config, job));
  if (result.stopped != StopRequest::kNone) {
    const bool requeue = result.stopped == StopRequest::kRequeue;
    SetExitCode(requeue ? kExitRequeue : kExitInterrupted);
    // Every rank says where it stopped: the same step on all of them.
    std::fprintf(stderr, "clipscale: rank %d of %d stopped after step %lld\n", result.rank,
                 result.world_size, static_cast<long long>(result.steps));
    if (result.rank != 0) return absl::OkStatus();
    std::printf("stopped by %s after step %lld; checkpoint: %s\n",
                requeue ? "SIGTERM/SIGUSR1" : "SIGINT", static_cast<long long>(result.steps),
                result.last_checkpoint.empty() ? "(none committed)" : result.last_checkpoint.c_str());
    std::printf("exit %d: %s\n", requeue ? kExitRequeue : kExitInterrupted,
                requeue ? "requeue me; the run continues with --resume latest"
                        : "interrupted; --resume latest continues it");
    return absl::OkStatus();
  }
  if (result.rank != 0) return absl::OkStatus();  // rank 0 reports for the job
  if (result.start_step > 0) {
    std::printf("resumed at step %lld from %s\n", static_cast<long long>(result.start_step),
                result.resumed_from.c_str());
  }
  std::printf("%d rank(s), backend %s, device %s\n", result.world_size, result.backend.c_str(),
              result.device.c_str());
  std::printf("trained %lld steps at %.1f samples/s; loss %.4f -> %.4f\n",
              static_cast<long long>(result.steps), result.samples_per_second, result.first_loss,
              result.last_loss);
  if (result.skipped_steps > 0) {
    std::printf("skipped %lld optimizer step(s) with a non-finite loss or gradient\n",
                static_cast<long long>(result.skipped_steps));
  }
  std::printf("data: %.0f samples, waited for data %.1f%% of the time", result.data["data/samples"],
              100 * result.data_wait_fraction);
  std::string bad;
  for (const auto& [name, value] : result.data) {
    if (name.find("bad_") != std::string::npos || name.find("index_") != std::string::npos ||
        name == "data/replaced") {
      if (value > 0) absl::StrAppendFormat(&bad, "%s%s %.0f", bad.empty() ? "" : ", ",
                                           name.substr(5), value);
    }
  }
  std::printf("; %s\n", bad.empty() ? "no bad samples" : bad.c_str());
  if (!result.eval.empty()) {
    std::printf("held-out evaluation:\n");
    PrintMetrics(result.eval);
    PrintSummary(result.eval);
  }
  std::printf("weights (OpenCLIP key names): %s\nlogs (TensorBoard, metrics.jsonl): %s\n",
              result.weights_path.c_str(), config.output.c_str());
  return absl::OkStatus();
}

// Under `clipscale launch` the rank reports to the coordinator, and tells it
// why it fails.
absl::Status RunTrain(const TrainOptions& o) {
  ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorClient> client, CoordinatorClient::FromEnvironment());
  if (client) {
    auto env = ParseLaunchEnv(ProcessEnvironment());
    if (env.ok()) client->set_rank(env->rank);
  }
  const absl::Status status = RunTrainWith(o, client.get());
  if (client && !status.ok()) client->Failed(std::string(status.message()), Restartable(status));
  return status;
}

absl::Status RunEvalCommand(EvalCommandOptions o) {
  if (!o.run.empty()) {  // a training output folder holds model.yaml and the weights
    o.model.model = (std::filesystem::path(o.run) / "model.yaml").string();
    o.model.weights = (std::filesystem::path(o.run) / "model.safetensors").string();
  }
  ASSIGN_OR_RETURN(ClipModel model, LoadModel(o.model));
  ASSIGN_OR_RETURN(ClipTokenizer tokenizer, o.bpe.empty() ? ClipTokenizer::LoadDefault()
                                                          : ClipTokenizer::Load(o.bpe));
  DataConfig data;
  data.index_cache = o.index_cache;
  data.shard_cache = o.shard_cache;
  std::unique_ptr<ShardCache> shard_cache = MakeShardCache(data);
  IndexBuildOptions build;
  build.cache = shard_cache.get();
  ASSIGN_OR_RETURN(auto split, DatasetIndex::OpenOrBuild(o.data, IndexCacheDir(data), build));
  EvalOptions options;
  options.cache = shard_cache.get();
  options.templates = o.templates;
  options.batch_size = o.batch_size;
  options.workers = o.workers;
  RETURN_IF_ERROR(LoadSplitClasses(*split, o.classnames, &options));
  ASSIGN_OR_RETURN(const auto metrics, Evaluate(model, tokenizer, split, options));
  std::printf("%lld samples (%lld skipped)\n", static_cast<long long>(metrics.at("samples")),
              static_cast<long long>(metrics.at("bad_samples")));
  PrintMetrics(metrics);
  PrintSummary(metrics);
  return absl::OkStatus();
}

void Report(const absl::Status& status) {
  if (status.ok()) return;
  auto env = ParseLaunchEnv(ProcessEnvironment());
  const std::string where =
      env.ok() && env->world_size > 1 ? " on rank " + std::to_string(env->rank) : "";
  std::fprintf(stderr, "clipscale: error%s: %s\n", where.c_str(),
               std::string(status.message()).c_str());
  SetExitCode(1);
}

}  // namespace

void RegisterTrainCommands(CLI::App& app) {
  auto train = std::make_shared<TrainOptions>();
  CLI::App* t = app.add_subcommand("train", "Train a CLIP model from a recipe (configs/*.yaml)");
  t->add_option("--config", train->config, "Recipe YAML")->required();
  t->add_option("--set", train->overrides, "Override key.path=value (repeatable)");
  t->add_option("--resume", train->resume,
                "Continue from 'latest' (the newest valid checkpoint in <output>/checkpoints; "
                "none: start fresh) or a checkpoint folder");
  t->add_flag("--resume-ignore-config", train->resume_ignore_config,
              "Resume even if the recipe changed in a way that breaks the continuation");
  t->callback([train] { Report(RunTrain(*train)); });

  auto eval = std::make_shared<EvalCommandOptions>();
  CLI::App* e = app.add_subcommand("eval", "Zero-shot and retrieval metrics on a WebDataset split");
  e->add_option("--run", eval->run, "Training output folder (model.yaml + model.safetensors)");
  e->add_option("--model", eval->model.model, "Model config name or YAML (without --run)")
      ->capture_default_str();
  e->add_option("--weights", eval->model.weights, "Weights .safetensors (without --run)");
  e->add_option("--data", eval->data, "Shard folder, spec or .index file")->required();
  e->add_option("--classnames", eval->classnames, "Class names file (default <data>/classnames.txt)");
  e->add_option("--template", eval->templates,
                "Prompt template with {} (repeatable; default: the split's "
                "zeroshot_classification_templates.txt, else \"a photo of a {}.\")");
  e->add_option("--bpe", eval->bpe, "BPE vocabulary file");
  e->add_option("--batch-size", eval->batch_size, "Images per encoder pass")->capture_default_str();
  e->add_option("--workers", eval->workers, "Decode threads (0: all cores)")->capture_default_str();
  e->add_option("--index-cache", eval->index_cache,
                "Folder of cached dataset indexes (default $CLIPSCALE_CACHE/index)");
  e->add_option("--shard-cache", eval->shard_cache,
                "Folder for copies of http(s):// and pipe: shards (default $CLIPSCALE_CACHE/shards)");
  e->callback([eval] { Report(RunEvalCommand(*eval)); });
}

}  // namespace clipscale::launcher
