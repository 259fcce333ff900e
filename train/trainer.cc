#include "train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/append_file.h"
#include "core/checkpoint_dir.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/logging.h"
#include "core/metrics.h"
#include "core/process_info.h"
#include "core/random.h"
#include "core/status.h"
#include "distributed/communicator_factory.h"
#include "distributed/cpu_share.h"
#include "distributed/launch_env.h"
#include "distributed/local_communicator.h"
#include "models/weights_io.h"
#include "train/checkpoint.h"
#include "train/checkpoint_writer.h"
#include "train/data_parallel.h"
#include "train/evaluate.h"
#include "train/fault_injection.h"
#include "train/host_collectives.h"
#include "train/precision.h"
#include "train/resume_check.h"
#include "train/train_data.h"
#include "train/trainer_impl.h"

namespace clipscale {
namespace trainer_internal {
namespace {

// The rank's batch as NaNs (the `nan` fault): every loss and gradient of the
// step turns non-finite, on all ranks.
torch::Tensor Poisoned(const torch::Tensor& images) {
  return torch::full_like(images, std::numeric_limits<float>::quiet_NaN());
}

// The L2 norm of all gradients (inf or NaN when one is not finite), in fp64,
// as a 0-dim tensor on the gradients' device.
torch::Tensor GradientNorm(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> norms;
  for (const torch::Tensor& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(torch::kFloat64));
  }
  return norms.empty() ? torch::zeros({}, torch::kFloat64) : torch::stack(norms).norm(2);
}

// torch::nn::utils::clip_grad_norm_, step for step, without its final read of
// the norm to the host: returns the norm as a 0-dim tensor on the device.
torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> grads, norms;
  for (const torch::Tensor& p : params) {
    if (!p.grad().defined()) continue;
    grads.push_back(p.grad());
    norms.push_back(p.grad().norm(2));
  }
  if (grads.empty()) return torch::zeros({}, torch::kFloat64);
  const torch::Tensor total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2);
  const torch::Tensor coef = torch::clamp(max_norm / (total + 1e-6), std::nullopt, 1.0);
  for (torch::Tensor& g : grads) g.mul_(coef);
  return total.to(torch::kFloat64);
}

}  // namespace

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
  device_ = torch::kCPU;
  if (device == "cuda") {
    // The NCCL communicator picks its device by the same rule.
    ASSIGN_OR_RETURN(const int index, DeviceForLocalRank(comm_->local_rank(),
                                                         static_cast<int>(torch::cuda::device_count())));
    device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  ASSIGN_OR_RETURN(step_options_.loss, ParseLossKind(config_.loss));
  step_options_.micro_batch = config_.data.micro_batch_size;
  step_options_.loss_tile = config_.distributed.loss_tile;
  step_options_.lock_image = config_.lock_image;
  ASSIGN_OR_RETURN(step_options_.precision, ParsePrecision(config_.precision));
  if (UsesLossScaling(step_options_.precision)) {
    scaler_.emplace(config_.grad_scaler);
    step_options_.scaler = &*scaler_;
  }
  step_options_.on_phase = [this](Phase phase) {
    // Inside a step there is no Status to return: an injected error is a crash there.
    const absl::Status fault = Enter(current_step_, phase);
    if (!fault.ok()) FatalError(__FILE__, __LINE__, std::string(fault.message()));
  };
  return absl::OkStatus();
}

absl::Status Trainer::Enter(int64_t step, Phase phase, bool* nan) {
  job_->Progress(step, phase);
  return InjectedFault(rank_, step, phase, nan);
}

absl::Status Trainer::CountSkipped(int64_t step, const StepOutcome& outcome) {
  if (outcome.overflow) {
    // The loss scaler's own business (it backs off), as torch.amp.GradScaler
    // skips silently: counted, not held against max_skipped_steps.
    ++scaler_skipped_steps_;
    if (rank_ == 0) {
      metrics_->Scalar("train/scaler_skipped_steps", static_cast<double>(scaler_skipped_steps_),
                       step);
    }
    return absl::OkStatus();
  }
  if (!outcome.skipped) {
    skipped_in_a_row_ = 0;
    return absl::OkStatus();
  }
  ++skipped_steps_;
  ++skipped_in_a_row_;
  job_->SkippedStep(step);
  if (rank_ == 0) {
    metrics_->Scalar("train/skipped_steps", static_cast<double>(skipped_steps_), step);
    LogWarning("step ", step, ": the loss (", outcome.loss,
               ") or a gradient is not finite: the optimizer step is skipped (", skipped_steps_,
               " skipped in this run, ", skipped_in_a_row_, " in a row)");
  }
  if (skipped_in_a_row_ > config_.max_skipped_steps) {
    return absl::DataLossError(absl::StrCat(
        skipped_in_a_row_, " steps in a row (", step - skipped_in_a_row_ + 1, " to ", step,
        ") had a non-finite loss or gradient, more than max_skipped_steps (",
        config_.max_skipped_steps, "): stopping instead of training on. Check the data of "
        "these steps (data.log_sample_keys), lower the learning rate, or resume from an earlier "
        "checkpoint"));
  }
  return absl::OkStatus();
}

absl::Status Trainer::Register() {
  WorkerInfo info;
  info.rank = rank_;
  info.world_size = world_;
  info.config_hash = Fnv1a64(ConfigToYaml(config_));
  info.index_hash = data_.train->hash();
  info.resume_step = start_step_;
  info.global_batch = config_.data.batch_size;
  ASSIGN_OR_RETURN(const JobPlan plan, job_->Register(info));
  if (plan.index_hash != info.index_hash || plan.resume_step != info.resume_step) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the coordinator starts the job at step %d on the dataset index %016x; this rank would "
        "start at step %d on %016x: not taking a step",
        plan.resume_step, plan.index_hash, info.resume_step, info.index_hash));
  }
  return absl::OkStatus();
}

// Every rank runs the same executable: a host with another install computes
// other numbers (or a different loader order) and the job would silently
// diverge. Each rank that differs from another names its own build.
absl::Status Trainer::CheckSameBuild() {
  if (world_ == 1) return absl::OkStatus();
  const auto stamp = static_cast<int64_t>(Fnv1a64(BuildStamp()));
  if (HostAllMaxMin({stamp}, *comm_, device_).same(0)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the ranks run different clipscale builds; rank ", rank_, " on ", HostName(), " runs '",
      BuildStamp(), "': install the same executable on every host"));
}

absl::Status Trainer::Setup() {
  RETURN_IF_ERROR(SetupDistributed());
  RETURN_IF_ERROR(CheckSameBuild());
  checkpoints_root_ = config_.output + "/checkpoints";
  // The CPUs the launcher gave this rank, shared with the ranks on the same
  // host that may run on them (distributed/cpu_share.h).
  const CpuShare cpus = ShareCpusOnHost();
  const int share = cpus.threads();
  torch::set_num_threads(config_.threads > 0 ? static_cast<int>(config_.threads) : share);
  workers_ = config_.data.workers > 0 ? static_cast<int>(config_.data.workers) : share;
  const HostMaxMin threads = HostAllMaxMin({torch::get_num_threads()}, *comm_, device_);
  if (rank_ == 0) {
    LogInfo("threads per rank: ", threads.min[0], " to ", threads.max[0],
            config_.threads > 0 ? " (threads in the recipe)" : "", "; rank 0: ",
            torch::get_num_threads(), " (", cpus.ToString(), "), ", workers_, " decode workers");
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
  // pure_bf16: weights (and so the optimizer state) in bf16, as OpenCLIP's
  // model.to(torch.bfloat16).
  model_->to(device_);
  if (WeightDtype(step_options_.precision) != torch::kFloat) {
    torch::NoGradGuard no_grad;
    for (auto& t : model_->parameters()) t.set_data(t.to(WeightDtype(step_options_.precision)));
  }
  BroadcastModule(*model_, *comm_);
  torch::manual_seed(config_.seed + rank_);
  model_->SetGradCheckpointing(config_.grad_checkpointing);
  if (config_.lock_image) LockImageTower();
  Communicator* reduce_over = comm_.get();
  if (config_.distributed.zero == 1) {
    zero_ = std::make_unique<ShardedAdamW>(ZeroParams(*model_), config_.optimizer, comm_.get());
    solo_ = std::make_unique<LocalCommunicator>();
    reduce_over = solo_.get();
  } else {
    optimizer_ = MakeAdamW(*model_, config_.optimizer);
  }
  reducer_ = std::make_unique<GradientReducer>(TrainableParameters(*model_), reduce_over,
                                               config_.distributed.bucket_mb << 20,
                                               config_.distributed.overlap);
  {
    // The AdamW moments this rank holds (2 per trained element; ZeRO-1: 2 per
    // element of its shard), the figure ZeRO divides by W.
    int64_t unsharded = 0;
    for (const torch::Tensor& p : TrainableParameters(*model_)) {
      unsharded += 2 * static_cast<int64_t>(p.nbytes());
    }
    const int64_t mine = zero_ ? zero_->state_bytes() : unsharded;
    const HostMaxMin bytes = HostAllMaxMin({mine}, *comm_, device_);
    if (rank_ == 0) {
      LogInfo("optimizer state per rank: ", absl::StrFormat("%.2f", bytes.max[0] / 1048576.0),
              " MiB",
              zero_ ? absl::StrFormat(" (ZeRO-1 over %d rank(s); unsharded %.2f MiB)", world_,
                                      unsharded / 1048576.0)
                    : std::string(" (unsharded; distributed.zero: 1 shards it)"));
    }
  }
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
    CheckpointWriterOptions writer;
    writer.root = config_.output + "/checkpoints";
    writer.keep = config_.checkpoint.keep;
    writer.keep_every = config_.checkpoint.keep_every;
    writer.pause_ms = CheckpointPauseMs();
    writer.job = job_;
    checkpoints_ = std::make_unique<CheckpointWriter>(std::move(writer));
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
  RETURN_IF_ERROR(Resume());
  return Register();
}

absl::StatusOr<Trainer::StepOutcome> Trainer::Step(int64_t step, const LoadedBatch& batch,
                                                    bool poison) {
  const int64_t size = config_.model_config.vision.image_size;
  const int context = config_.model_config.text.context_length;
  // The loader's buffers, without a copy on the CPU (the batch outlives the step).
  torch::Tensor images = torch::from_blob(batch.images, {batch.rows, 3, size, size});
  const torch::Tensor tokens = torch::from_blob(batch.tokens, {batch.rows, context}, torch::kInt64);
  if (poison) images = Poisoned(images);
  StepOutcome out;
  out.lr = LearningRate(config_.schedule, step, total_steps_);
  if (optimizer_) SetLearningRate(*optimizer_, out.lr);
  BroadcastBuffers(*model_, *comm_);  // BatchNorm statistics follow rank 0, as under DDP
  current_step_ = step;
  const torch::Tensor loss =
      ComputeGradients(model_, images.to(device_, /*non_blocking=*/true),
                       tokens.to(device_, /*non_blocking=*/true), *comm_, *reducer_, step_options_);
  // ZeRO-1: each rank now holds the summed gradient of its shard only.
  if (zero_) zero_->ReduceGradients();
  RETURN_IF_ERROR(Enter(step, Phase::kOptimizer));
  // The loss and the gradients are identical on every rank now (the loss is
  // the global one, the gradients all-reduced; with ZeRO-1 the norm is
  // all-reduced from the shards), so are the norm, the verdict on finiteness
  // and the step: the ranks agree without a word.
  if (scaler_) {
    // amp_fp16: the gradients carry the loss scale. The found-inf flag is the
    // same on every rank after the all-reduce (with ZeRO-1 each rank checks
    // its shard); it is combined over the ranks, so that no rank can ever
    // step where another skips.
    const bool found = zero_ ? scaler_->UnscaleAndCheckGradients({zero_->grad_shard()})
                             : scaler_->UnscaleAndCheck(reducer_->params());
    const bool overflow = HostAllMaxMin({found ? 1 : 0}, *comm_, device_).max[0] > 0;
    scaler_->Update(overflow);
    if (overflow) {
      out.loss = loss.item<double>();
      out.skipped = out.overflow = true;
      return out;
    }
  }
  const double max_norm = config_.optimizer.grad_clip_norm;
  torch::Tensor norm;
  if (zero_) {
    // clip_grad_norm_'s coefficient from the all-reduced norm (formed in fp64
    // from the shards: it may differ from the unsharded norm in the last bits).
    norm = zero_->GradNorm();
    if (max_norm > 0) {
      torch::NoGradGuard no_grad;
      torch::Tensor& shard = zero_->grad_shard();
      shard.mul_(torch::clamp(max_norm / (norm + 1e-6), std::nullopt, 1.0).to(shard.dtype()));
    }
  } else {
    norm = max_norm > 0 ? ClipGradNorm(model_->parameters(), max_norm)
                        : GradientNorm(reducer_->params());
  }
  // The step's one read from the device: the loss and the norm together,
  // for the verdict on finiteness (and the log).
  const torch::Tensor verdict =
      torch::stack({loss.to(torch::kFloat64).reshape({}), norm.reshape({})}).cpu();
  out.loss = verdict[0].item<double>();
  if (!std::isfinite(out.loss) || !std::isfinite(verdict[1].item<double>())) {
    out.skipped = true;  // the next step zeroes the gradients
    return out;
  }
  if (zero_) {
    zero_->Step(out.lr);
  } else {
    optimizer_->step();
  }
  {
    // OpenCLIP clamps the log temperature after every step: scale <= 100.
    torch::NoGradGuard no_grad;
    model_->logit_scale().clamp_(0, std::log(100.0));
  }
  return out;
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
  if (scaler_) metrics_->Scalar("train/loss_scale", scaler_->scale(), step);
  if (tty_) {
    const double eta = (total_steps_ - step - 1) * seconds;
    std::fprintf(stderr, "\r%s ",
                 FormatProgress(step + 1, total_steps_, loss, samples_per_second, eta).c_str());
    std::fflush(stderr);
  }
}

std::map<std::string, double> Trainer::LogDataStats(int64_t step) {
  std::map<std::string, double> counts = DataCounts(*data_.loader, *data_.train, *comm_, device_);
  job_->BadData(data_.loader->counts().bad_by_shard);  // this rank's, for the coordinator
  for (const auto& [name, value] : count_offsets_) {
    // What indexing dropped is counted once per run, not once per resume.
    if (name.rfind("data/index_", 0) != 0) counts[name] += value;
  }
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
  // BatchNorm statistics follow rank 0, as at every step's start: each rank's
  // last forward updated its own, and the ranks' shares of the split must be
  // embedded by the same model.
  RETURN_IF_ERROR(Enter(step, Phase::kEval));
  BroadcastBuffers(*model_, *comm_);
  if (!data_.val) return std::map<std::string, double>();
  ASSIGN_OR_RETURN(auto result, Evaluate(model_, *tokenizer_, data_.val, eval_options_, comm_.get()));
  if (rank_ == 0) {
    for (const auto& [name, value] : result) metrics_->Scalar("eval/" + name, value, step);
  }
  return result;
}

absl::StatusOr<TrainResult> Trainer::Run() {
  TrainResult result;
  result.start_step = start_step_;
  result.resumed_from = resumed_from_;
  const auto start = Clock::now();
  last_save_time_ = start;
  train_start_ = start;
  int64_t step = start_step_;
  const auto [epoch, step_in_epoch] = Cursor(step);
  RETURN_IF_ERROR(data_.loader->Seek(epoch, step_in_epoch));
  while (step < total_steps_) {
    const auto step_start = Clock::now();
    bool poison = false;
    RETURN_IF_ERROR(Enter(step, Phase::kData, &poison));
    ASSIGN_OR_RETURN(std::shared_ptr<LoadedBatch> batch, data_.loader->Next());
    const double wait = Seconds(step_start);
    wait_seconds_ += wait;
    RETURN_IF_ERROR(LogSampleKeys(*batch));
    ASSIGN_OR_RETURN(const StepOutcome outcome, Step(step, *batch, poison));
    batch.reset();  // its buffer goes back to the loader
    RETURN_IF_ERROR(CountSkipped(step, outcome));
    LogStep(step, outcome.loss, outcome.lr, Seconds(step_start), wait);
    job_->StepTime(Seconds(step_start));
    if (!outcome.skipped) {  // a skipped step's loss is not in the window's mean
      window_loss_ += outcome.loss;
      ++window_finite_;
    }
    ++step;
    if (++window_steps_ == config_.log_every || step == total_steps_) {
      const double mean = window_finite_ > 0 ? window_loss_ / window_finite_ : NAN;
      if (result.first_loss == 0) result.first_loss = mean;
      result.last_loss = mean;
      if (rank_ == 0 && !tty_) LogInfo("step ", step, "/", total_steps_, " loss ", result.last_loss);
      window_loss_ = 0;
      window_steps_ = 0;
      window_finite_ = 0;
      LogDataStats(step);
      if (rank_ == 0) RETURN_IF_ERROR(metrics_->Flush());
      if (sample_keys_) RETURN_IF_ERROR(sample_keys_->Flush());
    }
    if (config_.eval.every_steps > 0 && step % config_.eval.every_steps == 0 &&
        step < total_steps_) {
      RETURN_IF_ERROR(RunEval(step).status());
    }
    ASSIGN_OR_RETURN(result.stopped, AtStepBoundary(step));
    if (result.stopped != StopRequest::kNone) break;
  }
  if (tty_) std::fprintf(stderr, "\n");
  result.steps = step;
  const double train_seconds = std::max(Seconds(start), 1e-9);
  result.samples_per_second = (step - start_step_) * config_.data.batch_size / train_seconds;
  result.rank = rank_;
  result.world_size = world_;
  result.backend = comm_->backend();
  result.device = device_.str();
  result.skipped_steps = skipped_steps_;
  if (result.stopped != StopRequest::kNone || CheckpointsEnabled()) {
    // On a signal, or the run's last state: saved synchronously, committed
    // before any rank exits.
    if (last_saved_step_ != step) RETURN_IF_ERROR(Save(step, /*async=*/false));
    if (checkpoints_) {
      checkpoints_->Wait();
      ReportSaveOutcome();
    }
    comm_->Barrier();
    result.last_checkpoint = last_checkpoint_;
    if (result.stopped != StopRequest::kNone) {
      result.data = LogDataStats(step);
      result.data_wait_fraction = wait_seconds_ / train_seconds;
      if (rank_ == 0) RETURN_IF_ERROR(metrics_->Flush());
      if (sample_keys_) RETURN_IF_ERROR(sample_keys_->Flush());
      return result;
    }
  }
  // Every step applied the same all-reduced gradients on every rank, so the
  // replicas must agree to the bit; a difference is a bug worth stopping for.
  // The last step's forward left each rank its own BatchNorm statistics;
  // rank 0's are the run's (the next forward would have taken them too).
  BroadcastBuffers(*model_, *comm_);
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


}  // namespace trainer_internal

absl::StatusOr<TrainResult> Train(const TrainConfig& config, JobControl* job) {
  StopSignalScope signals;  // a signal from here on stops the run at a step boundary
  NoJobControl none;
  trainer_internal::Trainer trainer(config, job ? job : &none);
  RETURN_IF_ERROR(trainer.Setup());
  auto result = trainer.Run();
  if (job && result.ok()) job->Progress(result->steps, Phase::kDone);  // the last heartbeat
  return result;
}

}  // namespace clipscale
