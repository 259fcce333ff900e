// The Trainer behind Train() (train/trainer.h), shared by the two files that
// implement it: trainer.cc (setup, the loop, logging, evaluation) and
// trainer_checkpoint.cc (the step-boundary agreement, saving, resuming).
// Internal to train/.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "core/append_file.h"
#include "core/metrics.h"
#include "distributed/communicator.h"
#include "train/checkpoint_state.pb.h"
#include "train/checkpoint_writer.h"
#include "train/data_parallel.h"
#include "train/evaluate.h"
#include "train/grad_scaler.h"
#include "train/job_control.h"
#include "train/train_data.h"
#include "train/trainer.h"
#include "train/zero.h"

namespace clipscale::trainer_internal {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}


class Trainer {
 public:
  Trainer(const TrainConfig& config, JobControl* job)
      : config_(config), job_(job), model_(nullptr) {}

  absl::Status Setup();
  absl::Status CheckSameBuild();
  absl::StatusOr<TrainResult> Run();

 private:
  absl::Status SetupDistributed();
  absl::Status LoadData();
  void LockImageTower();
  struct StepOutcome {
    double loss = 0;
    double lr = 0;        // the learning rate the step used
    bool skipped = false;  // non-finite loss or gradient: no update
    bool overflow = false;  // amp_fp16: the loss scaler found an inf/NaN gradient
  };
  absl::StatusOr<StepOutcome> Step(int64_t step, const LoadedBatch& batch, bool poison);
  // This rank reached `phase` of `step`: the coordinator's heartbeat, and
  // whatever fault a test injects there.
  absl::Status Enter(int64_t step, Phase phase, bool* nan = nullptr);
  absl::Status Register();  // with the coordinator, after Resume
  // Counts a skipped step; an error after more than max_skipped_steps in a row.
  absl::Status CountSkipped(int64_t step, const StepOutcome& outcome);
  void LogStep(int64_t step, double loss, double lr, double seconds, double wait);
  absl::StatusOr<std::map<std::string, double>> RunEval(int64_t step);
  std::map<std::string, double> LogDataStats(int64_t step);  // a collective
  absl::Status LogSampleKeys(const LoadedBatch& batch);
  // Checkpoints (collectives). Resume() loads `config_.resume` if there is one.
  absl::Status Resume();
  absl::Status ApplyCheckpoint(const std::string& dir, const proto::CheckpointState& state);
  // The weights and the optimizer state (any W, with or without ZeRO-1).
  absl::Status LoadTensors(const std::string& dir, const proto::CheckpointState& state);
  bool CheckpointsEnabled() const {
    return config_.checkpoint.every_steps > 0 || config_.checkpoint.every_minutes > 0;
  }
  // At the boundary after `step` steps: what all ranks agree on (a stop
  // request, a save due by time), and the save if one is due.
  absl::StatusOr<StopRequest> AtStepBoundary(int64_t step);
  absl::Status Save(int64_t step, bool async);
  // Phase one of a save: the folder, and every rank's part in it. True on
  // rank 0 when the rest of the save is its to do.
  absl::StatusOr<bool> WriteParts(int64_t step, double* waited);
  void ReportSaveOutcome();  // rank 0
  std::pair<int64_t, int64_t> Cursor(int64_t step) const;  // (epoch, step in epoch)

  const TrainConfig& config_;
  JobControl* job_;
  int64_t current_step_ = 0;  // for the phase callbacks inside a step
  int64_t skipped_steps_ = 0, skipped_in_a_row_ = 0;
  int64_t scaler_skipped_steps_ = 0;
  std::optional<GradScaler> scaler_;  // amp_fp16
  std::unique_ptr<Communicator> comm_;
  int rank_ = 0, world_ = 1;
  int64_t local_batch_ = 0;  // this rank's share of the global batch
  torch::Device device_ = torch::kCPU;
  StepOptions step_options_;
  // ZeRO-1's reducer runs over this one-rank communicator (it then leaves the
  // gradients local: the sharded optimizer reduce-scatters them itself);
  // declared before the reducer, so that it outlives it.
  std::unique_ptr<Communicator> solo_;
  std::unique_ptr<GradientReducer> reducer_;
  ClipModel model_;
  std::optional<ClipTokenizer> tokenizer_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;  // null with ZeRO-1
  std::unique_ptr<ShardedAdamW> zero_;              // distributed.zero: 1
  std::unique_ptr<MetricsLogger> metrics_;
  TrainData data_;
  int workers_ = 1;
  std::unique_ptr<AppendFile> sample_keys_;
  EvalOptions eval_options_;
  int64_t total_steps_ = 0;
  int64_t start_step_ = 0;
  std::string resumed_from_;
  std::map<std::string, double> count_offsets_;  // bad-data counts before the resume
  double prior_train_seconds_ = 0;
  std::unique_ptr<CheckpointWriter> checkpoints_;  // rank 0
  std::string checkpoints_root_;
  int64_t last_saved_step_ = -1;
  std::string last_checkpoint_;
  Clock::time_point last_save_time_ = Clock::now();
  Clock::time_point train_start_ = Clock::now();
  double wait_seconds_ = 0;
  double window_loss_ = 0;
  int64_t window_steps_ = 0;
  int64_t window_finite_ = 0;  // steps of the window that were not skipped
  bool tty_ = false;
};

}  // namespace clipscale::trainer_internal
