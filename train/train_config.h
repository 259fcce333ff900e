// The training recipe: one YAML file (configs/*.yaml), every key typed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/model_config.h"
#include "train/grad_scaler.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace clipscale {

struct DataConfig {
  // Shard spec: folder, file, "dir/{00000..00009}.tar", several joined by ::,
  // or a .index file from `clipscale data index`.
  std::string train;
  std::string val;               // held-out shards (optional), same forms
  std::string classnames;        // one class per line (default: <val>/classnames.txt)
  // Sampling weight per `::` source of `train` (OpenCLIP's
  // --train-data-upsampling-factors); empty: 1 each. See data/sample_order.h.
  std::vector<double> train_weights;
  int64_t batch_size = 128;      // global batch, split evenly over the ranks
  // Samples per encoder pass on each rank; smaller than batch_size/ranks turns
  // on gradient caching (same gradients, activations of one micro-batch). 0: off.
  int64_t micro_batch_size = 0;
  bool augment = true;           // RandomResizedCrop(scale 0.9-1) vs the eval transform
  // JPEGs decoded at 1/2, 1/4 or 1/8 scale when the short side stays >= the
  // image size (training only; evaluation always decodes exactly).
  bool fast_decode = true;
  int64_t shuffle_block_shards = 4;  // shards whose samples are shuffled together
  int64_t workers = 0;           // decode threads per rank; 0: the rank's share of the cores
  int64_t prefetch_steps = 2;    // batches decoded ahead
  std::string index_cache;       // folder of cached indexes; "": <CLIPSCALE_CACHE>/index
  // Per-node copies of http(s):// and pipe: shards, least recently used evicted
  // beyond shard_cache_gb; "": <CLIPSCALE_CACHE>/shards.
  std::string shard_cache;
  double shard_cache_gb = 64;
  // Writes each rank's sample keys per step to <output>/sample_keys/rank_<r>.txt.
  bool log_sample_keys = false;

  template <class V>
  void Visit(V& v) {
    v("train", train);
    v("val", val);
    v("classnames", classnames);
    v("train_weights", train_weights);
    v("batch_size", batch_size);
    v("micro_batch_size", micro_batch_size);
    v("augment", augment);
    v("fast_decode", fast_decode);
    v("shuffle_block_shards", shuffle_block_shards);
    v("workers", workers);
    v("prefetch_steps", prefetch_steps);
    v("index_cache", index_cache);
    v("shard_cache", shard_cache);
    v("shard_cache_gb", shard_cache_gb);
    v("log_sample_keys", log_sample_keys);
  }
};

struct EvalConfig {
  int64_t every_steps = 0;  // 0: only at the end
  int64_t batch_size = 256;  // per rank
  std::vector<std::string> templates = {"a photo of a {}.", "a {}.", "a drawing of a {}."};

  template <class V>
  void Visit(V& v) {
    v("every_steps", every_steps);
    v("batch_size", batch_size);
    v("templates", templates);
  }
};

struct DistributedConfig {
  std::string backend = "auto";  // auto, local, mpi, nccl (see communicator_factory.h)
  double nccl_timeout_s = 600;   // a NCCL collective unfinished after this ends the job
  int64_t bucket_mb = 25;        // gradient all-reduce bucket size
  int64_t loss_tile = 1024;      // rows/columns of one logit tile of the loss
  // Gradient buckets all-reduced while backward runs (false: all after it).
  bool overlap = true;
  // ZeRO stage: 0 keeps the whole AdamW state on every rank; 1 shards it over
  // the ranks (train/zero.h: reduce-scatter, a shard's update, all-gather).
  int64_t zero = 0;

  template <class V>
  void Visit(V& v) {
    v("backend", backend);
    v("nccl_timeout_s", nccl_timeout_s);
    v("bucket_mb", bucket_mb);
    v("loss_tile", loss_tile);
    v("overlap", overlap);
    v("zero", zero);
  }
};

// Checkpoints under <output>/checkpoints/step_N/ (see train/checkpoint.h).
struct CheckpointConfig {
  int64_t every_steps = 0;    // save every this many steps; 0: not by steps
  double every_minutes = 0;   // save when this much training time passed; 0: not by time
  int64_t keep = 3;           // the newest K (>= 2; 0 keeps all) ...
  int64_t keep_every = 0;     // ... and every step that is a multiple of this, for good
  bool async = true;          // write on a background thread (the loop only copies)

  template <class V>
  void Visit(V& v) {
    v("every_steps", every_steps);
    v("every_minutes", every_minutes);
    v("keep", keep);
    v("keep_every", keep_every);
    v("async", async);
  }
};

// How `clipscale launch` supervises the job (ignored by `clipscale train`).
struct LaunchConfig {
  int64_t max_restarts = 3;      // restarts from the last checkpoint before giving up
  double backoff_s = 5;          // wait before restart k: backoff_s * 2^(k-1), at most ...
  double backoff_max_s = 60;     // ... this long
  double heartbeat_s = 1;        // every rank reports (step, phase) this often
  int64_t heartbeat_misses = 3;  // a rank silent for this many periods is dead
  // The job is hung when no rank made progress for max(hang_min_s, hang_factor
  // x the median step time).
  double hang_min_s = 300;
  double hang_factor = 5;
  // A slot (host, or rank slot on one machine) that failed this many times is
  // left out and the job continues on fewer ranks; 0: never.
  int64_t exclude_after = 2;
  double startup_timeout_s = 600;  // every rank must have joined by then
  // A rank that cannot reach the coordinator this long stops (its launch is gone).
  double orphan_s = 60;
  std::string listen = "127.0.0.1:0";  // the coordinator's address (port 0: any free port)

  template <class V>
  void Visit(V& v) {
    v("max_restarts", max_restarts);
    v("backoff_s", backoff_s);
    v("backoff_max_s", backoff_max_s);
    v("heartbeat_s", heartbeat_s);
    v("heartbeat_misses", heartbeat_misses);
    v("hang_min_s", hang_min_s);
    v("hang_factor", hang_factor);
    v("exclude_after", exclude_after);
    v("startup_timeout_s", startup_timeout_s);
    v("orphan_s", orphan_s);
    v("listen", listen);
  }
};

struct TrainConfig {
  std::string model = "tiny";  // config name or YAML path
  ModelConfig model_config;    // filled from `model`; keys under `model_overrides` change it
  std::vector<std::string> model_overrides;  // e.g. ["vision.patch_dropout=0.5"]
  // "clip" (InfoNCE) or "siglip" (sigmoid; a model without init_logit_bias gets
  // OpenCLIP's SigLIP start: logit scale 10, bias -10).
  std::string loss = "clip";
  // fp32, amp_bf16 (autocast), amp_fp16 (autocast + dynamic loss scale) or
  // pure_bf16 (bf16 weights), as OpenCLIP's --precision; see train/precision.h.
  std::string precision = "fp32";
  // amp_fp16's loss scaler (torch.amp.GradScaler's defaults).
  GradScalerConfig grad_scaler;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  EvalConfig eval;
  int64_t epochs = 10;
  int64_t max_steps = 0;  // > 0: stop (and end the schedule) after this many steps
  uint64_t seed = 0;
  bool grad_checkpointing = false;
  bool lock_image = false;     // LiT: frozen image tower, no backward through it
  int threads = 0;             // intra-op threads; 0 = all cores
  // auto: the rank's GPU (local rank) with the nccl backend or one local rank
  // on a CUDA machine, else the CPU. cpu, cuda: forced.
  std::string device = "auto";
  DistributedConfig distributed;
  std::string output = "runs/demo";
  int64_t log_every = 10;
  CheckpointConfig checkpoint;
  // "latest" (the newest checkpoint under <output>/checkpoints that verifies;
  // none: start fresh) or a checkpoint folder; "": no resume.
  std::string resume;
  bool resume_ignore_config = false;  // resume although the recipe changed incompatibly
  // A step whose loss or gradient is not finite is skipped (no optimizer
  // update, counted); more than this many in a row stop the run with an error.
  int64_t max_skipped_steps = 10;
  LaunchConfig launch;

  template <class V>
  void Visit(V& v) {
    v("model", model);
    v("model_overrides", model_overrides);
    v("loss", loss);
    v("precision", precision);
    v("grad_scaler", grad_scaler);
    v("data", data);
    v("optimizer", optimizer);
    v("schedule", schedule);
    v("eval", eval);
    v("epochs", epochs);
    v("max_steps", max_steps);
    v("seed", seed);
    v("grad_checkpointing", grad_checkpointing);
    v("lock_image", lock_image);
    v("threads", threads);
    v("device", device);
    v("distributed", distributed);
    v("output", output);
    v("log_every", log_every);
    v("checkpoint", checkpoint);
    v("resume", resume);
    v("resume_ignore_config", resume_ignore_config);
    v("max_skipped_steps", max_skipped_steps);
    v("launch", launch);
  }
};

// Loads the recipe, applies --set overrides, resolves the model config and
// checks what would otherwise fail after training started.
absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path,
                                            const std::vector<std::string>& overrides);

}  // namespace clipscale
