#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/logging.h"
#include "core/metrics.h"
#include "core/random.h"
#include "core/status.h"
#include "distributed/communicator_factory.h"
#include "distributed/launch_env.h"
#include "models/weights_io.h"
#include "train/batch.h"
#include "train/data_parallel.h"
#include "train/evaluate.h"

namespace clipscale {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

class Trainer {
 public:
  explicit Trainer(const TrainConfig& config) : config_(config), model_(nullptr) {}

  absl::Status Setup();
  absl::StatusOr<TrainResult> Run();

 private:
  absl::Status SetupDistributed();
  absl::Status LoadData();
  void LockImageTower();
  // Returns the batch loss; `lr` is the learning rate the step used.
  double Step(int64_t step, const std::vector<int64_t>& indices, uint64_t augment_seed,
              double* lr);
  void LogStep(int64_t step, double loss, double lr, double seconds);
  std::map<std::string, double> RunEval(int64_t step);
  void LogDataStats(int64_t step);

  const TrainConfig& config_;
  std::unique_ptr<Communicator> comm_;
  int rank_ = 0, world_ = 1;
  int64_t local_batch_ = 0;  // this rank's share of the global batch
  torch::Device device_ = torch::kCPU;
  StepOptions step_options_;
  std::unique_ptr<GradientReducer> reducer_;
  ClipModel model_;
  std::optional<ClipTokenizer> tokenizer_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<MetricsLogger> metrics_;
  DataStats stats_;
  std::vector<Example> train_, val_;
  EvalOptions eval_options_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0;
  double window_loss_ = 0;
  int64_t window_steps_ = 0;
  bool tty_ = false;
};

absl::Status Trainer::LoadData() {
  ASSIGN_OR_RETURN(train_, LoadExamples(config_.data.train, &stats_));
  if (config_.data.batch_size > static_cast<int64_t>(train_.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.batch_size: ", config_.data.batch_size, " is larger than the ",
                     train_.size(), " usable training samples in ", config_.data.train));
  }
  if (config_.data.batch_size % world_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.batch_size: ", config_.data.batch_size, " does not split evenly over ",
                     world_, " ranks"));
  }
  local_batch_ = config_.data.batch_size / world_;
  steps_per_epoch_ = static_cast<int64_t>(train_.size()) / config_.data.batch_size;
  total_steps_ = steps_per_epoch_ * config_.epochs;
  if (!config_.data.val.empty()) {
    DataStats val_stats;
    ASSIGN_OR_RETURN(val_, LoadExamples(config_.data.val, &val_stats));
    ASSIGN_OR_RETURN(eval_options_.classnames,
                     LoadClassnames(config_.data.val, config_.data.classnames));
    eval_options_.templates = config_.eval.templates;
  }
  return absl::OkStatus();
}

void Trainer::LockImageTower() {
  // LiT: the image tower is frozen (and left out of the optimizer), and its
  // forward runs without building a graph.
  for (auto& p : model_->visual().parameters()) p.set_requires_grad(false);
}

absl::Status Trainer::SetupDistributed() {
  CommunicatorOptions options;
  options.set_backend(config_.distributed.backend)
      .set_nccl_timeout_s(config_.distributed.nccl_timeout_s);
  auto comm = CreateCommunicator(options);
  if (!comm.ok()) return Annotate(comm.status(), "distributed.backend");
  comm_ = std::move(*comm);
  rank_ = comm_->rank();
  world_ = comm_->size();
  const std::string backend = comm_->backend();
  const bool cuda = torch::cuda::is_available();
  std::string device = config_.device;
  if (device == "auto") device = backend == "nccl" || (backend == "local" && cuda) ? "cuda" : "cpu";
  if (device == "cuda" && !cuda) {
    return absl::FailedPreconditionError("device: cuda, but no CUDA device is available");
  }
  if (device == "cuda" && backend == "mpi") {
    return absl::InvalidArgumentError(
        "device: cuda with distributed.backend mpi (MPI collectives take CPU tensors); use nccl");
  }
  if (device == "cpu" && backend == "nccl") {
    return absl::InvalidArgumentError("device: cpu with distributed.backend nccl; use mpi");
  }
  device_ = device == "cuda" ? torch::Device(torch::kCUDA, comm_->local_rank()) : torch::kCPU;
  ASSIGN_OR_RETURN(step_options_.loss, ParseLossKind(config_.loss));
  step_options_.micro_batch = config_.data.micro_batch_size;
  step_options_.loss_tile = config_.distributed.loss_tile;
  step_options_.lock_image = config_.lock_image;
  return absl::OkStatus();
}

absl::Status Trainer::Setup() {
  RETURN_IF_ERROR(SetupDistributed());
  if (config_.threads > 0) {
    torch::set_num_threads(config_.threads);
  } else if (device_.is_cpu()) {
    // The node's cores shared by the ranks on it (2 ranks on 4 cores: 2 threads each).
    auto env = ParseLaunchEnv(ProcessEnvironment());
    const int local = env.ok() ? env->local_size : 1;
    const int share = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local);
    torch::set_num_threads(std::min(torch::get_num_threads(), share));
  }
  ASSIGN_OR_RETURN(tokenizer_, ClipTokenizer::LoadDefault());
  RETURN_IF_ERROR(LoadData());
  RETURN_IF_ERROR(Annotate(ValidateSchedule(config_.schedule, total_steps_),
                           absl::StrCat("with ", total_steps_, " steps in total")));
  // As open_clip_train's random_seed(seed, 0) then (seed, rank): the same
  // initial weights everywhere (rank 0's are broadcast anyway), then each rank
  // its own stream for patch dropout.
  torch::manual_seed(config_.seed);
  model_ = ClipModel(config_.model_config);
  model_->to(device_);
  BroadcastModule(*model_, *comm_);
  torch::manual_seed(config_.seed + rank_);
  model_->SetGradCheckpointing(config_.grad_checkpointing);
  if (config_.lock_image) LockImageTower();
  optimizer_ = MakeAdamW(*model_, config_.optimizer);
  reducer_ = std::make_unique<GradientReducer>(TrainableParameters(*model_), comm_.get(),
                                               config_.distributed.bucket_mb << 20);
  if (rank_ == 0) {
    std::filesystem::create_directories(config_.output);
    RETURN_IF_ERROR(WriteFileAtomically(config_.output + "/config.yaml", ConfigToYaml(config_)));
    RETURN_IF_ERROR(WriteFileAtomically(config_.output + "/model.yaml",
                                        ConfigToYaml(config_.model_config)));
    ASSIGN_OR_RETURN(metrics_, OpenMetricsLogger(config_.output));
    tty_ = IsTerminal(stderr);
    LogInfo("training ", config_.model, " on ", train_.size(), " samples: ", total_steps_,
            " steps of global batch ", config_.data.batch_size, " = ", world_, " rank(s) x ",
            local_batch_, " (", comm_->backend(), ", ", device_.str(), ", ", config_.loss,
            " loss", step_options_.micro_batch > 0 && step_options_.micro_batch < local_batch_
                ? absl::StrCat(", gradient cache of micro-batches of ", step_options_.micro_batch)
                : std::string(),
            "); output in ", config_.output);
  }
  return absl::OkStatus();
}

double Trainer::Step(int64_t step, const std::vector<int64_t>& indices, uint64_t augment_seed,
                     double* lr) {
  const ModelConfig& mc = config_.model_config;
  Batch batch = MakeBatch(train_, indices, mc.vision.image_size, *tokenizer_,
                          mc.text.context_length, config_.data.augment ? &augment_seed : nullptr);
  *lr = LearningRate(config_.schedule, step, total_steps_);
  SetLearningRate(*optimizer_, *lr);
  BroadcastBuffers(*model_, *comm_);  // BatchNorm statistics follow rank 0, as under DDP
  const double loss = ComputeGradients(model_, batch.images.to(device_), batch.tokens.to(device_),
                                       *comm_, *reducer_, step_options_);
  // The gradients are identical on every rank now, so are the norm and the step.
  if (config_.optimizer.grad_clip_norm > 0) {
    torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.optimizer.grad_clip_norm);
  }
  optimizer_->step();
  {
    // OpenCLIP clamps the log temperature after every step: scale <= 100.
    torch::NoGradGuard no_grad;
    model_->logit_scale().clamp_(0, std::log(100.0));
  }
  return loss;
}

void Trainer::LogStep(int64_t step, double loss, double lr, double seconds) {
  if (rank_ != 0) return;
  const double samples_per_second = config_.data.batch_size / std::max(seconds, 1e-9);
  metrics_->Scalar("train/loss", loss, step);
  metrics_->Scalar("train/lr", lr, step);
  metrics_->Scalar("train/logit_scale", model_->logit_scale().exp().item<double>(), step);
  if (model_->logit_bias().defined()) {
    metrics_->Scalar("train/logit_bias", model_->logit_bias().item<double>(), step);
  }
  metrics_->Scalar("train/samples_per_second", samples_per_second, step);
  if (tty_) {
    const double eta = (total_steps_ - step - 1) * seconds;
    std::fprintf(stderr, "\r%s ",
                 FormatProgress(step + 1, total_steps_, loss, samples_per_second, eta).c_str());
    std::fflush(stderr);
  }
}

void Trainer::LogDataStats(int64_t step) {
  if (rank_ != 0) return;
  metrics_->Scalar("data/samples", static_cast<double>(stats_.samples), step);
  metrics_->Scalar("data/bad_shards", static_cast<double>(stats_.bad_shards), step);
  metrics_->Scalar("data/bad_images", static_cast<double>(stats_.bad_images), step);
  metrics_->Scalar("data/bad_captions", static_cast<double>(stats_.bad_captions), step);
  metrics_->Scalar("data/missing_fields", static_cast<double>(stats_.missing_fields), step);
}

std::map<std::string, double> Trainer::RunEval(int64_t step) {
  if (val_.empty()) return {};
  std::map<std::string, double> result =
      Evaluate(model_, *tokenizer_, val_, eval_options_, comm_.get());
  if (rank_ == 0) {
    for (const auto& [name, value] : result) metrics_->Scalar("eval/" + name, value, step);
  }
  return result;
}

absl::StatusOr<TrainResult> Trainer::Run() {
  TrainResult result;
  LogDataStats(0);
  const auto start = Clock::now();
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < config_.epochs; ++epoch) {
    const std::vector<int64_t> order =
        Permutation(static_cast<int64_t>(train_.size()), MixSeed(config_.seed, epoch));
    for (int64_t b = 0; b < steps_per_epoch_; ++b, ++step) {
      const auto step_start = Clock::now();
      // This rank's share of the global batch: rows [rank·n, (rank+1)·n).
      const int64_t first = b * config_.data.batch_size + rank_ * local_batch_;
      std::vector<int64_t> indices(order.begin() + first, order.begin() + first + local_batch_);
      double lr = 0;
      const double loss = Step(step, indices, MixSeed(config_.seed, epoch, b + 1), &lr);
      LogStep(step, loss, lr, Seconds(step_start));
      window_loss_ += loss;
      if (++window_steps_ == config_.log_every || step + 1 == total_steps_) {
        if (result.first_loss == 0) result.first_loss = window_loss_ / window_steps_;
        result.last_loss = window_loss_ / window_steps_;
        if (rank_ == 0 && !tty_) {
          LogInfo("step ", step + 1, "/", total_steps_, " loss ", result.last_loss);
        }
        window_loss_ = 0;
        window_steps_ = 0;
        if (rank_ == 0) RETURN_IF_ERROR(metrics_->Flush());
      }
      if (config_.eval.every_steps > 0 && (step + 1) % config_.eval.every_steps == 0 &&
          step + 1 < total_steps_) {
        RunEval(step + 1);
      }
    }
  }
  if (tty_) std::fprintf(stderr, "\n");
  result.steps = step;
  result.samples_per_second = step * config_.data.batch_size / std::max(Seconds(start), 1e-9);
  result.rank = rank_;
  result.world_size = world_;
  result.backend = comm_->backend();
  result.device = device_.str();
  // Every step applied the same all-reduced gradients on every rank, so the
  // replicas must agree to the bit; a difference is a bug worth stopping for.
  RETURN_IF_ERROR(CheckReplicasIdentical(*model_, *comm_));
  result.eval = RunEval(step);
  result.weights_path = config_.output + "/model.safetensors";
  if (rank_ == 0) {
    RETURN_IF_ERROR(SaveWeights(*model_, result.weights_path));
    RETURN_IF_ERROR(metrics_->Flush());
  }
  return result;
}

}  // namespace

absl::StatusOr<TrainResult> Train(const TrainConfig& config) {
  Trainer trainer(config);
  RETURN_IF_ERROR(trainer.Setup());
  return trainer.Run();
}

}  // namespace clipscale
