// `clipscale slurm`: writes an sbatch job script for a recipe. The script
// runs `clipscale launch` on the batch host (the coordinator, restarts inside
// the allocation), which starts the ranks with srun; Slurm's warning signal
// makes the ranks save, and the script requeues the job, which resumes from
// `latest`. Every line users change carries a comment.
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/process_info.h"
#include "core/status.h"
#include "launcher/commands.h"
#include "train/stop_signal.h"
#include "train/train_config.h"

namespace clipscale::launcher {
namespace {

namespace fs = std::filesystem;

struct SlurmOptions {
  std::string config;
  std::vector<std::string> overrides;
  int nodes = 1;
  int gpus_per_node = 0;
  int tasks_per_node = 0;  // 0: gpus_per_node, or 1 on CPU nodes
  int cpus_per_task = 0;   // 0: leave it to the partition's default
  std::string partition, account, time = "24:00:00", job_name, clipscale;
  int signal_seconds = 300;
};

std::string Absolute(const std::string& path) {
  std::error_code error;
  const fs::path absolute = fs::absolute(path, error);
  return error ? path : absolute.lexically_normal().string();
}

// One "#SBATCH" line with its comment aligned (a path is not padded: the
// script reads the same wherever it was written).
std::string Directive(const std::string& option, const std::string& comment, bool pad = true) {
  return absl::StrFormat(pad ? "#SBATCH %-34s # %s\n" : "#SBATCH %s # %s\n", option, comment);
}

absl::StatusOr<std::string> Script(const SlurmOptions& o) {
  if (o.nodes < 1) return absl::InvalidArgumentError("--nodes must be at least 1");
  if (o.gpus_per_node < 0) return absl::InvalidArgumentError("--gpus-per-node must be >= 0");
  const int tasks = o.tasks_per_node > 0 ? o.tasks_per_node : std::max(1, o.gpus_per_node);
  if (o.gpus_per_node > 0 && tasks != o.gpus_per_node) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tasks-per-node ", tasks, " with --gpus-per-node ", o.gpus_per_node,
        ": clipscale runs one rank per GPU"));
  }
  if (o.signal_seconds < 10) return absl::InvalidArgumentError("--signal-seconds must be >= 10");
  std::vector<std::string> overrides = o.overrides;
  ASSIGN_OR_RETURN(const TrainConfig config, LoadTrainConfig(o.config, overrides));
  const int world = o.nodes * tasks;
  if (config.data.batch_size % world != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data.batch_size ", config.data.batch_size, " of ", o.config, " is not divisible by the ",
        world, " ranks of --nodes ", o.nodes, " x ", tasks, " per node"));
  }
  const std::string recipe = Absolute(o.config);
  const std::string output = Absolute(config.output);
  const std::string name =
      o.job_name.empty() ? "clipscale-" + fs::path(o.config).stem().string() : o.job_name;
  const std::string binary = o.clipscale.empty() ? SelfExecutable() : Absolute(o.clipscale);

  std::string s = "#!/bin/bash\n";
  absl::StrAppend(&s, "# Written by `clipscale slurm` for ", recipe, ".\n",
                  "# Submit with `sbatch FILE`; extra `clipscale train` arguments may follow\n",
                  "# (sbatch FILE --set schedule.lr=1e-4). Edit the #SBATCH lines freely: the\n",
                  "# recipe decides model, data and the global batch (", config.data.batch_size,
                  " = ", world, " ranks x ", config.data.batch_size / world, ").\n");
  s += Directive("--job-name=" + name, "the name squeue shows");
  s += Directive(absl::StrCat("--nodes=", o.nodes), "machines");
  s += Directive(absl::StrCat("--ntasks-per-node=", tasks),
                 o.gpus_per_node > 0 ? "ranks per machine: one per GPU" : "ranks per machine");
  if (o.gpus_per_node > 0) {
    s += Directive("--gpus-per-task=1", "each rank sees its own GPU (CUDA_VISIBLE_DEVICES)");
  }
  if (o.cpus_per_task > 0) {
    s += Directive(absl::StrCat("--cpus-per-task=", o.cpus_per_task),
                   "cores per rank: its compute threads and decode workers");
  }
  s += Directive("--time=" + o.time,
                 absl::StrCat("wall-clock limit; the ranks save ", o.signal_seconds, " s before it"));
  if (!o.partition.empty()) s += Directive("--partition=" + o.partition, "where it runs");
  if (!o.account.empty()) s += Directive("--account=" + o.account, "who pays");
  s += Directive("--requeue", "may go back to the queue (preemption, node failure, this script)");
  s += Directive(absl::StrCat("--signal=B:USR1@", o.signal_seconds),
                 "USR1 to this script before the limit: save, requeue");
  s += Directive("--open-mode=append", "a requeued run appends to the same log");
  s += Directive("--output=" + output + "/slurm-%j.out", "%j: the job id (kept by a requeue)",
                 /*pad=*/false);
  std::error_code cwd_error;
  s += Directive("--chdir=" + fs::current_path(cwd_error).string(),
                 "relative paths in the recipe start here", /*pad=*/false);
  absl::StrAppend(&s, R"(
set -uo pipefail
clipscale=)", ShellQuote(binary), R"(   # the same build on every node (a shared file system)
recipe=)", ShellQuote(recipe), R"(
output=)", ShellQuote(output), R"(   # checkpoints and logs; every node must see it
mkdir -p "$output"
# srun does not take --cpus-per-task from sbatch since Slurm 22.05; each rank
# sizes its threads by the CPUs it is bound to (sched_getaffinity).
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK; fi

# The coordinator runs here, on the batch host; the ranks are one srun step
# (srun --mpi=pmix: Debian's Open MPI reaches Slurm through PMIx, not PMI2). A
# rank that dies or hangs restarts the step inside this allocation from the
# last checkpoint. --resume latest: a requeued job goes on where it stopped.)");
  if (o.nodes > 1) {
    absl::StrAppend(&s, R"(
# launch.listen=0.0.0.0:0: the ranks on the other nodes reach the coordinator
# by this host's name (any free port); they must present the job's token.)");
  }
  absl::StrAppend(&s, R"(
"$clipscale" launch --launcher srun --srun-arg=--cpu-bind=cores -- \
  --config "$recipe" --set output="$output" --resume latest)");
  if (o.nodes > 1) {
    // The ranks on the other nodes reach the coordinator by this host's name;
    // they present the job's token.
    absl::StrAppend(&s, " --set launch.listen=0.0.0.0:0");
  }
  for (const std::string& set : o.overrides) absl::StrAppend(&s, " --set ", ShellQuote(set));
  absl::StrAppend(&s, R"( "$@" &
launch=$!
requeue=0
# USR1 (the time limit is near): save, stop, requeue. TERM (scancel, or
# preemption, which requeues by itself): save and stop.
trap 'requeue=1; kill -USR1 $launch' USR1
trap 'kill -TERM $launch' TERM
while true; do
  wait $launch; status=$?
  kill -0 $launch 2>/dev/null || break  # wait returns early when a signal arrives
done
if [ $status -eq )", kExitRequeue, R"( ] && [ $requeue -eq 1 ]; then
  echo "clipscale job $SLURM_JOB_ID saved on USR1: requeueing"
  # Slurm ends this run now; a requeue is not a failure of the job.
  scontrol requeue "$SLURM_JOB_ID" && exit 0
fi
exit $status
)");
  return s;
}

}  // namespace

void RegisterSlurmCommand(CLI::App& app) {
  auto o = std::make_shared<SlurmOptions>();
  CLI::App* c = app.add_subcommand(
      "slurm", "Write an sbatch job script for a recipe (requeue on Slurm's warning signal, "
               "restarts inside the allocation) to stdout");
  c->add_option("--config", o->config, "Recipe (YAML)")->required();
  c->add_option("--set", o->overrides, "Recipe override key=value, also passed to the job");
  c->add_option("--nodes", o->nodes, "Machines")->capture_default_str();
  c->add_option("--gpus-per-node", o->gpus_per_node, "GPUs per machine (0: CPU nodes)")
      ->capture_default_str();
  c->add_option("--tasks-per-node", o->tasks_per_node,
                "Ranks per machine (default: one per GPU, or 1 on CPU nodes)");
  c->add_option("--cpus-per-task", o->cpus_per_task, "Cores per rank (default: the partition's)");
  c->add_option("--partition", o->partition, "Slurm partition");
  c->add_option("--account", o->account, "Slurm account");
  c->add_option("--time", o->time, "Wall-clock limit")->capture_default_str();
  c->add_option("--job-name", o->job_name, "Job name (default: clipscale-<recipe name>)");
  c->add_option("--signal-seconds", o->signal_seconds,
                "Seconds before the limit that USR1 arrives (time to save)")
      ->capture_default_str();
  c->add_option("--clipscale", o->clipscale, "The clipscale binary the job runs (default: this one)");
  c->callback([o] {
    auto script = Script(*o);
    if (!script.ok()) {
      std::fprintf(stderr, "clipscale: error: %s\n", std::string(script.status().message()).c_str());
      SetExitCode(2);
      return;
    }
    // Slurm opens the job's log (--output) before the script runs: the folder
    // must exist at submission.
    std::vector<std::string> overrides = o->overrides;
    auto config = LoadTrainConfig(o->config, overrides);
    std::error_code error;
    if (config.ok() && !fs::exists(config->output) &&
        fs::create_directories(config->output, error)) {
      std::fprintf(stderr, "clipscale slurm: created %s (the job's log goes there)\n",
                   Absolute(config->output).c_str());
    }
    std::fwrite(script->data(), 1, script->size(), stdout);
  });
}

}  // namespace clipscale::launcher
