// `clipscale train` and `clipscale eval`.
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/status.h"
#include "data/examples.h"
#include "distributed/launch_env.h"
#include "launcher/commands.h"
#include "launcher/model_loading.h"
#include "train/evaluate.h"
#include "train/trainer.h"
#include "train/zeroshot.h"

namespace clipscale::launcher {
namespace {

struct TrainOptions {
  std::string config;
  std::vector<std::string> overrides;
};

struct EvalCommandOptions {
  ModelOptions model;
  std::string run, data, classnames, bpe;
  std::vector<std::string> templates = {"a photo of a {}."};
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

absl::Status RunTrain(const TrainOptions& o) {
  ASSIGN_OR_RETURN(TrainConfig config, LoadTrainConfig(o.config, o.overrides));
  ASSIGN_OR_RETURN(TrainResult result, Train(config));
  if (result.rank != 0) return absl::OkStatus();  // rank 0 reports for the job
  std::printf("%d rank(s), backend %s, device %s\n", result.world_size, result.backend.c_str(),
              result.device.c_str());
  std::printf("trained %lld steps at %.1f samples/s; loss %.4f -> %.4f\n",
              static_cast<long long>(result.steps), result.samples_per_second, result.first_loss,
              result.last_loss);
  if (!result.eval.empty()) {
    std::printf("held-out evaluation:\n");
    PrintMetrics(result.eval);
    PrintSummary(result.eval);
  }
  std::printf("weights (OpenCLIP key names): %s\nlogs (TensorBoard, metrics.jsonl): %s\n",
              result.weights_path.c_str(), config.output.c_str());
  return absl::OkStatus();
}

absl::Status RunEvalCommand(EvalCommandOptions o) {
  if (!o.run.empty()) {  // a training output folder holds model.yaml and the weights
    o.model.model = (std::filesystem::path(o.run) / "model.yaml").string();
    o.model.weights = (std::filesystem::path(o.run) / "model.safetensors").string();
  }
  ASSIGN_OR_RETURN(ClipModel model, LoadModel(o.model));
  ASSIGN_OR_RETURN(ClipTokenizer tokenizer, o.bpe.empty() ? ClipTokenizer::LoadDefault()
                                                          : ClipTokenizer::Load(o.bpe));
  DataStats stats;
  ASSIGN_OR_RETURN(std::vector<Example> examples, LoadExamples(o.data, &stats));
  EvalOptions options;
  options.templates = o.templates;
  ASSIGN_OR_RETURN(options.classnames, LoadClassnames(o.data, o.classnames));
  std::printf("%zu samples (%lld skipped)\n", examples.size(),
              static_cast<long long>(stats.bad_images + stats.bad_captions + stats.missing_fields));
  const auto metrics = Evaluate(model, tokenizer, examples, options);
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
  t->callback([train] { Report(RunTrain(*train)); });

  auto eval = std::make_shared<EvalCommandOptions>();
  CLI::App* e = app.add_subcommand("eval", "Zero-shot and retrieval metrics on a WebDataset split");
  e->add_option("--run", eval->run, "Training output folder (model.yaml + model.safetensors)");
  e->add_option("--model", eval->model.model, "Model config name or YAML (without --run)")
      ->capture_default_str();
  e->add_option("--weights", eval->model.weights, "Weights .safetensors (without --run)");
  e->add_option("--data", eval->data, "Shard folder or spec")->required();
  e->add_option("--classnames", eval->classnames, "Class names file (default <data>/classnames.txt)");
  e->add_option("--template", eval->templates, "Prompt template with {} (repeatable)")
      ->capture_default_str();
  e->add_option("--bpe", eval->bpe, "BPE vocabulary file");
  e->callback([eval] { Report(RunEvalCommand(*eval)); });
}

}  // namespace clipscale::launcher
