// Trainer's checkpoint side: what all ranks agree on at a step boundary, the
// two-phase save (every rank's part, then rank 0's files and the commit) and
// the resume (see train/trainer_impl.h).
#include <ctime>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/checkpoint_dir.h"
#include "core/config.h"
#include "core/logging.h"
#include "core/random.h"
#include "core/status.h"
#include "train/checkpoint.h"
#include "train/host_collectives.h"
#include "train/resume_check.h"
#include "train/stop_signal.h"
#include "train/trainer_impl.h"

namespace clipscale::trainer_internal {

std::pair<int64_t, int64_t> Trainer::Cursor(int64_t step) const {
  int64_t epoch = 0;
  while (epoch < static_cast<int64_t>(data_.steps_per_epoch.size()) &&
         step >= data_.steps_per_epoch[epoch]) {
    step -= data_.steps_per_epoch[epoch++];
  }
  return {epoch, step};
}


absl::StatusOr<StopRequest> Trainer::AtStepBoundary(int64_t step) {
  // One small all-reduce per step: a signal on any rank stops every rank at
  // the same step, and rank 0's clock alone decides a save by time.
  const double minutes = config_.checkpoint.every_minutes;
  const bool due_by_time =
      rank_ == 0 && minutes > 0 && Seconds(last_save_time_) >= minutes * 60;
  torch::Tensor flags = torch::tensor(
      {static_cast<int64_t>(PendingStopRequest()), static_cast<int64_t>(due_by_time)},
      torch::kInt64);
  HostAllReduce(flags, ReduceOp::kMax, *comm_, device_);
  const auto stop = static_cast<StopRequest>(flags[0].item<int64_t>());
  if (stop != StopRequest::kNone) {
    if (rank_ == 0) {
      LogInfo(stop == StopRequest::kRequeue ? "SIGTERM/SIGUSR1" : "SIGINT",
              " received: saving step ", step, " and stopping");
    }
    return stop;  // Run saves synchronously on the way out
  }
  const int64_t every = config_.checkpoint.every_steps;
  if (((every > 0 && step % every == 0) || flags[1].item<int64_t>() != 0) &&
      step < total_steps_) {
    RETURN_IF_ERROR(Save(step, config_.checkpoint.async));
  }
  return StopRequest::kNone;
}

void Trainer::ReportSaveOutcome() {
  if (rank_ != 0) return;
  std::optional<CheckpointWriter::Outcome> outcome = checkpoints_->TakeOutcome();
  if (!outcome) return;
  if (outcome->dir.ok()) {
    last_checkpoint_ = *outcome->dir;
    metrics_->Scalar("checkpoint/write_s", outcome->seconds, outcome->step);
    LogInfo("checkpoint: step ", outcome->step, " written in ",
            absl::StrFormat("%.2f", outcome->seconds), " s: ", *outcome->dir);
  } else {
    LogWarning("checkpoint: saving step ", outcome->step, " failed, nothing committed (",
               outcome->dir.status().message(), "); training goes on and the next save retries");
  }
}

absl::StatusOr<bool> Trainer::WriteParts(int64_t step, double* waited) {
  // Rank 0 waits for the previous save and creates the folder; everyone learns
  // whether it exists before writing into it.
  std::string prepared;
  if (rank_ == 0) {
    *waited = checkpoints_->Wait();
    ReportSaveOutcome();
    const absl::Status status = checkpoints_->Prepare(step);
    if (!status.ok()) prepared = std::string(status.message());
  }
  prepared = HostBroadcastBytes(prepared, 0, *comm_, device_);
  if (!prepared.empty()) {
    if (rank_ == 0) {
      LogWarning("checkpoint: step ", step, " not saved (", prepared,
                 "); training goes on and the next save retries");
    }
    return false;
  }
  // This rank's part: its generators, for an exact continuation on the same
  // W; with ZeRO-1 also its shard of the optimizer state.
  proto::RankPart part;
  part.set_rank(rank_);
  part.set_world_size(world_);
  part.set_step(step);
  *part.mutable_rng() = CaptureRng(rank_, device_);
  std::vector<ManifestEntry> entries;
  std::string error;
  absl::StatusOr<ManifestEntry> entry = WriteRankPart(checkpoints_root_, step, part);
  if (entry.ok() && zero_) {
    entries.push_back(*entry);
    entry = WriteOptimizerShard(checkpoints_root_, step, rank_, zero_->Shard());
  }
  if (entry.ok()) {
    entries.push_back(*entry);
  } else {
    entries.clear();
    error = std::string(entry.status().message());
  }
  if (job_->supervised()) {
    // Every rank votes for itself; rank 0 votes last, with the big files, and
    // the coordinator commits (or drops) the save.
    if (rank_ != 0) {
      auto voted = job_->Vote(step, entries, error, false);
      if (!voted.ok()) LogWarning("checkpoint: step ", step, ": ", voted.status().message());
      return false;
    }
    if (!error.empty()) {
      // A NO vote from rank 0 drops the save; the others' votes are moot.
      (void)job_->Vote(step, {}, error, false);
      checkpoints_->Abandon();
      LogWarning("checkpoint: step ", step, " not saved (", error, ")");
      return false;
    }
    checkpoints_->AddParts(std::move(entries));
    return true;
  }
  // Without a coordinator: rank 0 gathers the parts (one "name\tsize\tcrc"
  // line per file) and commits them all.
  std::string mine = error.empty() ? "O" : "E" + error;
  for (size_t i = 0; i < entries.size() && error.empty(); ++i) {
    absl::StrAppend(&mine, i > 0 ? "\n" : "", entries[i].name, "\t", entries[i].size, "\t",
                    entries[i].crc32c);
  }
  const std::vector<std::string> all = HostAllGatherBytes(mine, *comm_, device_);
  if (rank_ != 0) return false;
  std::vector<ManifestEntry> parts;
  for (size_t r = 0; r < all.size(); ++r) {
    bool ok = all[r][0] == 'O';
    for (const absl::string_view line : absl::StrSplit(all[r].substr(1), '\n')) {
      const std::vector<std::string> fields = absl::StrSplit(line, '\t');
      ManifestEntry e;
      ok = ok && fields.size() == 3 && absl::SimpleAtoi(fields[1], &e.size) &&
           absl::SimpleAtoi(fields[2], &e.crc32c);
      if (!ok) break;
      e.name = fields[0];
      parts.push_back(std::move(e));
    }
    if (!ok) {
      checkpoints_->Abandon();
      LogWarning("checkpoint: step ", step, " not saved: rank ", r, " could not write its part (",
                 all[r].substr(1), "); training goes on and the next save retries");
      return false;
    }
  }
  checkpoints_->AddParts(std::move(parts));
  return true;
}

absl::Status Trainer::Save(int64_t step, bool async) {
  RETURN_IF_ERROR(Enter(step, Phase::kSave));
  const auto start = Clock::now();
  double waited = 0;
  ASSIGN_OR_RETURN(const bool commit_here, WriteParts(step, &waited));
  const std::map<std::string, double> counts = LogDataStats(step);
  last_saved_step_ = step;
  last_save_time_ = Clock::now();
  if (!commit_here) return absl::OkStatus();
  CheckpointSnapshot* snapshot = checkpoints_->snapshot();
  CaptureTensors(*model_, optimizer_.get(), device_.is_cuda(), snapshot);
  proto::CheckpointState& state = snapshot->state;
  state.Clear();
  const auto [epoch, step_in_epoch] = Cursor(step);
  state.set_step(step);
  state.set_epoch(epoch);
  state.set_step_in_epoch(step_in_epoch);
  state.set_seed(config_.seed);
  state.set_total_steps(total_steps_);
  state.set_world_size(world_);
  state.set_global_batch(config_.data.batch_size);
  state.set_micro_batch(config_.data.micro_batch_size);
  state.set_config_yaml(ConfigToYaml(config_));
  state.set_model_yaml(ConfigToYaml(config_.model_config));
  state.set_config_hash(Fnv1a64(state.config_yaml()));
  state.set_index_hash(data_.train->hash());
  state.set_clipscale_version(CLIPSCALE_VERSION);
  for (const auto& [name, value] : counts) (*state.mutable_data_counts())[name] = value;
  state.set_unix_time(static_cast<int64_t>(std::time(nullptr)));
  state.set_train_seconds(prior_train_seconds_ + Seconds(train_start_));
  state.set_skipped_steps(skipped_steps_);
  if (reducer_->rebuilt()) {
    for (int i : reducer_->order()) state.add_bucket_order(i);
  }
  if (zero_) {
    state.set_zero_world(world_);
    state.set_zero_shard_size(zero_->shard_size());
    for (const auto& [name, numel] : ZeroLayout(zero_->params())) {
      proto::ZeroLayoutEntry* e = state.add_zero_layout();
      e->set_name(name);
      e->set_numel(numel);
    }
  }
  if (scaler_) {
    state.set_loss_scale(scaler_->state().scale);
    state.set_scaler_growth_tracker(scaler_->state().growth_tracker);
    state.set_scaler_skipped_steps(scaler_skipped_steps_);
  }
  checkpoints_->Start(async);
  const double blocked = Seconds(start);
  metrics_->Scalar("checkpoint/blocking_s", blocked, step);
  LogInfo("checkpoint: step ", step, async ? " handed to the writer" : " saved",
          " (training blocked ", absl::StrFormat("%.3f", blocked), " s)",
          waited > 0.01 ? absl::StrFormat(" (%.2f s waiting for the previous save)", waited) : "");
  if (!async) ReportSaveOutcome();
  return absl::OkStatus();
}

absl::Status Trainer::Resume() {
  const std::string root = config_.output + "/checkpoints";
  if (config_.resume.empty()) {
    const std::vector<int64_t> steps = rank_ == 0 ? ListCheckpoints(root) : std::vector<int64_t>();
    if (!steps.empty()) {
      LogWarning("starting fresh (no --resume) although ", root, " holds checkpoints up to step ",
                 steps.front(), "; they are replaced as this run saves the same steps");
    }
    return absl::OkStatus();
  }
  // Rank 0 picks and reads the checkpoint; everyone gets its verdict, so that
  // all ranks fail alike or continue alike.
  std::string verdict;  // "E<error>", "N" (nothing to resume) or "D<dir>\n<state.pb>"
  if (rank_ == 0) {
    std::vector<std::string> skipped;
    auto chosen = ResolveResume(config_.resume, root, &skipped);
    for (const std::string& why : skipped) LogWarning("resume: skipping ", why);
    if (!chosen.ok()) {
      verdict = "E" + std::string(chosen.status().message());
    } else if (!*chosen) {
      verdict = "N";
    } else {
      auto state = ReadCheckpointState(**chosen);
      verdict = state.ok() ? "D" + **chosen + "\n" + state->SerializeAsString()
                           : "E" + std::string(state.status().message());
    }
  }
  verdict = HostBroadcastBytes(verdict, 0, *comm_, device_);
  if (verdict[0] == 'E') return absl::DataLossError(verdict.substr(1));
  if (verdict[0] == 'N') {
    if (rank_ == 0) LogInfo("resume: no checkpoint under ", root, ": starting fresh");
    return absl::OkStatus();
  }
  const size_t newline = verdict.find('\n');
  proto::CheckpointState state;
  state.ParseFromString(verdict.substr(newline + 1));
  return ApplyCheckpoint(verdict.substr(1, newline - 1), state);
}

absl::Status Trainer::LoadTensors(const std::string& dir, const proto::CheckpointState& state) {
  std::vector<std::pair<std::string, int64_t>> saved_layout;
  for (const proto::ZeroLayoutEntry& e : state.zero_layout()) {
    saved_layout.emplace_back(e.name(), e.numel());
  }
  const int saved_world = state.zero_world();  // 0: optimizer.safetensors
  // Rank 0 loads the weights (and without ZeRO-1 the optimizer); the others
  // take its tensors, as at the start of a fresh run.
  std::string error;
  if (rank_ == 0) {
    absl::Status loaded;
    if (zero_) {
      loaded = LoadModel(dir, *model_);
    } else if (saved_world == 0) {
      loaded = LoadModelAndOptimizer(dir, *model_, *optimizer_);
    } else {
      // A ZeRO-1 checkpoint resumed without ZeRO: the whole flat range.
      const std::vector<ZeroParam> params = ZeroParams(*model_);
      const auto layout = ZeroLayout(params);
      int64_t total = 0;
      for (const auto& [name, numel] : layout) total += numel;
      auto all = ReadOptimizerRange(dir, layout, saved_layout, saved_world, state.zero_shard_size(),
                                    0, total, params.front().tensor.scalar_type());
      loaded = all.status();
      if (all.ok()) loaded = SetOptimizerState(*optimizer_, params, *all);
      if (loaded.ok()) loaded = LoadModel(dir, *model_);
    }
    error = std::string(loaded.message());
  }
  error = HostBroadcastBytes(error, 0, *comm_, device_);
  if (!error.empty()) return absl::DataLossError(absl::StrCat("resume: ", error));
  BroadcastModule(*model_, *comm_);
  if (optimizer_) {
    BroadcastOptimizerState(*optimizer_, *comm_, 0, device_);
    return absl::OkStatus();
  }
  // ZeRO-1: every rank reads the part of the state it owns now, from the
  // shards of any W (or from an unsharded optimizer.safetensors); all fail
  // alike if one cannot.
  const int64_t begin = std::min(zero_->numel(), zero_->shard_begin());
  const int64_t end = std::min(zero_->numel(), begin + zero_->shard_size());
  auto range = ReadOptimizerRange(dir, ZeroLayout(zero_->params()), saved_layout, saved_world,
                                  state.zero_shard_size(), begin, end,
                                  zero_->params().front().tensor.scalar_type());
  absl::Status restored = range.status();
  if (range.ok()) restored = zero_->Restore(*range);
  const std::string mine = restored.ok() ? "" : std::string(restored.message());
  for (const std::string& e : HostAllGatherBytes(mine, *comm_, device_)) {
    if (!e.empty()) return absl::DataLossError(absl::StrCat("resume: ", e));
  }
  return absl::OkStatus();
}

absl::Status Trainer::ApplyCheckpoint(const std::string& dir, const proto::CheckpointState& state) {
  const std::vector<std::string> conflicts = ResumeConflicts(state, config_, data_.train->hash());
  if (!conflicts.empty() && !config_.resume_ignore_config) {
    return absl::FailedPreconditionError(absl::StrCat(
        "resume: ", dir, " cannot continue under this recipe (--resume-ignore-config to "
        "resume anyway):\n  ", absl::StrJoin(conflicts, "\n  ")));
  }
  if (state.step() > total_steps_) {
    return absl::FailedPreconditionError(absl::StrCat("resume: ", dir, " is at step ", state.step(),
                                                      ", past this run's ", total_steps_, " steps"));
  }
  if (rank_ == 0) {
    for (const std::string& c : conflicts) LogWarning("resume: ignoring a recipe change: ", c);
  }
  RETURN_IF_ERROR(LoadTensors(dir, state));
  std::optional<proto::RankPart> part;
  if (state.world_size() == world_) {
    // Each rank reads its own part; all fail alike if one cannot.
    auto read = ReadRankPart(dir, rank_);
    const std::string mine = read.ok() ? "" : std::string(read.status().message());
    for (const std::string& e : HostAllGatherBytes(mine, *comm_, device_)) {
      if (!e.empty()) return absl::DataLossError(absl::StrCat("resume: ", e));
    }
    part = *read;
  }
  if (part) {
    RETURN_IF_ERROR(RestoreRng(part->rng(), device_));
  } else if (state.world_size() == world_ && state.rng_size() == world_) {
    RETURN_IF_ERROR(RestoreRng(state.rng(rank_), device_));  // written before rank parts
  } else {
    // Another world size draws other patch-dropout masks anyway: fresh streams.
    torch::manual_seed(config_.seed + static_cast<uint64_t>(rank_) +
                       1000003ull * static_cast<uint64_t>(state.step()));
  }
  start_step_ = state.step();
  last_saved_step_ = state.step();
  resumed_from_ = dir;
  last_checkpoint_ = dir;
  prior_train_seconds_ = state.train_seconds();
  skipped_steps_ = state.skipped_steps();
  // The buckets of the run being continued, so that its sums are formed alike.
  if (state.bucket_order_size() > 0 &&
      !reducer_->SetOrder({state.bucket_order().begin(), state.bucket_order().end()})) {
    if (rank_ == 0) {
      LogWarning(
          "resume: the checkpoint's gradient bucket order does not fit this model; "
          "the buckets are rebuilt after the first step instead");
    }
  }
  // A checkpoint of another precision has no scale: the scaler starts afresh.
  if (scaler_ && state.loss_scale() > 0) {
    scaler_->Restore(GradScalerState{state.loss_scale(), state.scaler_growth_tracker()});
    scaler_skipped_steps_ = state.scaler_skipped_steps();
  }
  for (const auto& [name, value] : state.data_counts()) count_offsets_[name] = value;
  if (rank_ == 0) {
    const auto [epoch, step_in_epoch] = Cursor(start_step_);
    LogInfo("resume: continuing from ", dir, " at step ", start_step_, " (epoch ", epoch,
            ", step ", step_in_epoch, " of it), saved by ", state.world_size(), " rank(s)",
            state.world_size() == world_
                ? ""
                : absl::StrCat(", now ", world_, ": the same global batches, other float sums"));
  }
  return absl::OkStatus();
}

}  // namespace clipscale::trainer_internal
