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
#include "core/append_file.h"
#include "core/metrics.h"
#include "core/random.h"
#include "core/status.h"
#include "distributed/communicator_factory.h"
#include "distributed/launch_env.h"
#include "models/weights_io.h"
#include "train/data_parallel.h"
#include "train/evaluate.h"
#include "train/fault_injection.h"
#include "train/train_data.h"

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
  double Step(int64_t step, const LoadedBatch& batch, double* lr);
  void LogStep(int64_t step, double loss, double lr, double seconds, double wait);
  absl::StatusOr<std::map<std::string, double>> RunEval(int64_t step);
  std::map<std::string, double> LogDataStats(int64_t step);  // a collective
  absl::Status LogSampleKeys(const LoadedBatch& batch);

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
  TrainData data_;
  int workers_ = 1;
  std::unique_ptr<AppendFile> sample_keys_;
  EvalOptions eval_options_;
  int64_t total_steps_ = 0;
  double wait_seconds_ = 0;
  double window_loss_ = 0;
  int64_t window_steps_ = 0;
  bool tty_ = false;
};

absl::Status Trainer::LoadData() {
  ASSIGN_OR_RETURN(data_, OpenTrainData(config_, *tokenizer_, *comm_, workers_, device_));
  local_batch_ = config_.data.batch_size / world_;
  total_steps_ = data_.total_steps;
  if (data_.val) {
    eval_options_.templates = config_.eval.templates;
    eval_options_.batch_size = config_.eval.batch_size;
    eval_options_.workers = workers_;
    eval_options_.cache = data_.shard_cache.get();
    RETURN_IF_ERROR(Annotate(LoadSplitClasses(*data_.val, config_.data.classnames, &eval_options_),
                             "data.classnames"));
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
  // The node's cores shared by the ranks on it (2 ranks on 4 cores: 2 each).
  auto env = ParseLaunchEnv(ProcessEnvironment());
  const int local = env.ok() ? std::max(1, env->local_size) : 1;
  const int share = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local);
  if (config_.threads > 0) {
    torch::set_num_threads(config_.threads);
  } else if (device_.is_cpu()) {
    torch::set_num_threads(std::min(torch::get_num_threads(), share));
  }
  workers_ = config_.data.workers > 0 ? static_cast<int>(config_.data.workers) : share;
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
    std::error_code error;
    std::filesystem::create_directories(config_.output, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat("output: cannot create ", config_.output, ": ", error.message()));
    }
    RETURN_IF_ERROR(WriteFileAtomically(config_.output + "/config.yaml", ConfigToYaml(config_)));
    RETURN_IF_ERROR(WriteFileAtomically(config_.output + "/model.yaml",
                                        ConfigToYaml(config_.model_config)));
    ASSIGN_OR_RETURN(metrics_, OpenMetricsLogger(config_.output));
    tty_ = IsTerminal(stderr);
    LogInfo("training ", config_.model, " on ", data_.train->total_samples(), " samples in ",
            data_.train->shards().size(), " shard(s): ", total_steps_,
            " steps of global batch ", config_.data.batch_size, " = ", world_, " rank(s) x ",
            local_batch_, " (", comm_->backend(), ", ", device_.str(), ", ", config_.loss,
            " loss", step_options_.micro_batch > 0 && step_options_.micro_batch < local_batch_
                ? absl::StrCat(", gradient cache of micro-batches of ", step_options_.micro_batch)
                : std::string(),
            "); output in ", config_.output);
  }
  if (config_.data.log_sample_keys) {
    const std::string dir = config_.output + "/sample_keys";
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) {
      return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, ": ", error.message()));
    }
    ASSIGN_OR_RETURN(sample_keys_, AppendFile::Open(absl::StrCat(dir, "/rank_", rank_, ".txt"),
                                                    /*exclusive=*/false, FlushPolicy()));
  }
  return absl::OkStatus();
}

double Trainer::Step(int64_t step, const LoadedBatch& batch, double* lr) {
  const int64_t size = config_.model_config.vision.image_size;
  const int context = config_.model_config.text.context_length;
  // The loader's buffers, without a copy on the CPU (the batch outlives the step).
  const torch::Tensor images = torch::from_blob(batch.images, {batch.rows, 3, size, size});
  const torch::Tensor tokens = torch::from_blob(batch.tokens, {batch.rows, context}, torch::kInt64);
  *lr = LearningRate(config_.schedule, step, total_steps_);
  SetLearningRate(*optimizer_, *lr);
  BroadcastBuffers(*model_, *comm_);  // BatchNorm statistics follow rank 0, as under DDP
  const double loss = ComputeGradients(model_, images.to(device_, /*non_blocking=*/true),
                                       tokens.to(device_, /*non_blocking=*/true), *comm_,
                                       *reducer_, step_options_);
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

void Trainer::LogStep(int64_t step, double loss, double lr, double seconds, double wait) {
  if (rank_ != 0) return;
  metrics_->Scalar("data/wait_s", wait, step);
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

std::map<std::string, double> Trainer::LogDataStats(int64_t step) {
  std::map<std::string, double> counts = DataCounts(*data_.loader, *data_.train, *comm_, device_);
  if (rank_ == 0) {
    for (const auto& [name, value] : counts) metrics_->Scalar(name, value, step);
  }
  return counts;
}

absl::Status Trainer::LogSampleKeys(const LoadedBatch& batch) {
  if (!sample_keys_) return absl::OkStatus();
  std::string line = absl::StrCat(batch.epoch, " ", batch.step);
  for (int64_t r = 0; r < batch.rows; ++r) absl::StrAppend(&line, " ", batch.keys[r]);
  sample_keys_->Append(line + "\n");
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, double>> Trainer::RunEval(int64_t step) {
  if (!data_.val) return std::map<std::string, double>();
  ASSIGN_OR_RETURN(auto result, Evaluate(model_, *tokenizer_, data_.val, eval_options_, comm_.get()));
  if (rank_ == 0) {
    for (const auto& [name, value] : result) metrics_->Scalar("eval/" + name, value, step);
  }
  return result;
}

absl::StatusOr<TrainResult> Trainer::Run() {
  TrainResult result;
  const auto start = Clock::now();
  int64_t step = 0;
  RETURN_IF_ERROR(data_.loader->Seek(0, 0));
  while (step < total_steps_) {
    const auto step_start = Clock::now();
    RETURN_IF_ERROR(InjectedFault(rank_, step));
    ASSIGN_OR_RETURN(std::shared_ptr<LoadedBatch> batch, data_.loader->Next());
    const double wait = Seconds(step_start);
    wait_seconds_ += wait;
    RETURN_IF_ERROR(LogSampleKeys(*batch));
    double lr = 0;
    const double loss = Step(step, *batch, &lr);
    batch.reset();  // its buffer goes back to the loader
    LogStep(step, loss, lr, Seconds(step_start), wait);
    window_loss_ += loss;
    ++step;
    if (++window_steps_ == config_.log_every || step == total_steps_) {
      if (result.first_loss == 0) result.first_loss = window_loss_ / window_steps_;
      result.last_loss = window_loss_ / window_steps_;
      if (rank_ == 0 && !tty_) LogInfo("step ", step, "/", total_steps_, " loss ", result.last_loss);
      window_loss_ = 0;
      window_steps_ = 0;
      LogDataStats(step);
      if (rank_ == 0) RETURN_IF_ERROR(metrics_->Flush());
      if (sample_keys_) RETURN_IF_ERROR(sample_keys_->Flush());
    }
    if (config_.eval.every_steps > 0 && step % config_.eval.every_steps == 0 &&
        step < total_steps_) {
      RETURN_IF_ERROR(RunEval(step).status());
    }
  }
  if (tty_) std::fprintf(stderr, "\n");
  result.steps = step;
  const double train_seconds = std::max(Seconds(start), 1e-9);
  result.samples_per_second = step * config_.data.batch_size / train_seconds;
  result.rank = rank_;
  result.world_size = world_;
  result.backend = comm_->backend();
  result.device = device_.str();
  // Every step applied the same all-reduced gradients on every rank, so the
  // replicas must agree to the bit; a difference is a bug worth stopping for.
  RETURN_IF_ERROR(CheckReplicasIdentical(*model_, *comm_));
  ASSIGN_OR_RETURN(result.eval, RunEval(step));
  result.data = LogDataStats(step);
  result.data_wait_fraction = wait_seconds_ / train_seconds;
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
