// `clipscale launch`: the supervised job (coordinator + worker job + restarts),
// and `clipscale status`: what a running (or ended) launch is doing.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/process_info.h"
#include "core/status.h"
#include "distributed/launch_env.h"
#include "launcher/commands.h"
#include "launcher/coordinator/coordinator.grpc.pb.h"
#include "launcher/coordinator/coordinator.h"
#include "launcher/coordinator/coordinator_client.h"
#include "launcher/coordinator/slurm_env.h"
#include "launcher/coordinator/supervisor.h"
#include "train/checkpoint.h"
#include "train/train_config.h"

extern char** environ;

namespace clipscale::launcher {
namespace {

namespace fs = std::filesystem;

struct LaunchOptions {
  int np = 0;  // 0: the allocation's tasks under Slurm (SLURM_NTASKS), else 1
  std::string launcher = "auto";
  std::string hostfile;
  int64_t max_restarts = -1;  // -1: launch.max_restarts of the recipe
  std::vector<std::string> mpirun_args;
  std::vector<std::string> srun_args;
  std::vector<std::string> train_args;  // after --
};

// The parts of the `clipscale train` arguments the launcher needs; the rest
// passes through. --resume is taken out: the launcher decides it per attempt.
struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string resume;
  std::vector<std::string> passed;
};

absl::StatusOr<TrainArgs> ParseTrainArgs(const std::vector<std::string>& args) {
  TrainArgs out;
  auto value = [&](size_t* i, const std::string& flag) -> absl::StatusOr<std::string> {
    const std::string& a = args[*i];
    if (a.size() > flag.size() && a.compare(0, flag.size() + 1, flag + "=") == 0) {
      return a.substr(flag.size() + 1);
    }
    if (*i + 1 >= args.size()) return absl::InvalidArgumentError(flag + " needs a value");
    return args[++*i];
  };
  auto is = [](const std::string& a, const std::string& flag) {
    return a == flag || a.rfind(flag + "=", 0) == 0;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (is(a, "--resume")) {
      ASSIGN_OR_RETURN(out.resume, value(&i, "--resume"));
      continue;
    }
    if (is(a, "--config")) {
      ASSIGN_OR_RETURN(out.config, value(&i, "--config"));
      out.passed.insert(out.passed.end(), {"--config", out.config});
      continue;
    }
    if (is(a, "--set")) {
      ASSIGN_OR_RETURN(std::string set, value(&i, "--set"));
      out.overrides.push_back(set);
      out.passed.insert(out.passed.end(), {"--set", set});
      continue;
    }
    out.passed.push_back(a);
  }
  if (out.config.empty()) {
    return absl::InvalidArgumentError(
        "clipscale launch ... -- --config RECIPE [train options]: the train arguments need --config");
  }
  return out;
}

absl::StatusOr<std::optional<ResumePoint>> Resolve(const std::string& resume,
                                                   const std::string& root) {
  std::vector<std::string> skipped;
  ASSIGN_OR_RETURN(std::optional<std::string> dir, ResolveResume(resume, root, &skipped));
  for (const std::string& why : skipped) {
    std::fprintf(stderr, "clipscale launch: resume: skipping %s\n", why.c_str());
  }
  if (!dir) return std::optional<ResumePoint>();
  ASSIGN_OR_RETURN(const proto::CheckpointState state, ReadCheckpointState(*dir));
  return std::optional<ResumePoint>(ResumePoint{state.step(), state.index_hash(), *dir});
}

// Whether a hostfile lists a host other than this one.
bool HostfileNamesOtherHosts(const std::string& path) {
  if (path.empty()) return false;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line.substr(0, line.find('#')));
    std::string host;
    if (!(words >> host)) continue;
    if (host != "localhost" && host.rfind("127.", 0) != 0 && host != HostName()) return true;
  }
  return false;
}

// Where the ranks run: srun inside a Slurm allocation (its nodes, its tasks),
// else mpirun (the hostfile's hosts, or this machine).
struct Placement {
  std::string launcher;
  int np = 1;
  std::vector<std::pair<std::string, int>> slurm_nodes;
};

absl::StatusOr<Placement> Place(const LaunchOptions& o) {
  const EnvMap env = ProcessEnvironment();
  const bool in_allocation = env.count("SLURM_JOB_ID") > 0;
  Placement p;
  p.launcher = o.launcher;
  if (p.launcher == "auto") p.launcher = in_allocation && o.hostfile.empty() ? "srun" : "mpirun";
  if (p.launcher != "srun" && p.launcher != "mpirun") {
    return absl::InvalidArgumentError(
        absl::StrCat("--launcher ", o.launcher, ": expected auto, mpirun or srun"));
  }
  if (p.launcher == "srun") {
    if (!o.hostfile.empty()) {
      return absl::InvalidArgumentError("--hostfile is for mpirun; srun runs on the allocation's nodes");
    }
    auto nodes = AllocationNodes(env);
    if (!nodes.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--launcher srun: ", nodes.status().message(), "; run it from an sbatch script or salloc"));
    }
    p.slurm_nodes = *std::move(nodes);
    int tasks = 0;
    for (const auto& node : p.slurm_nodes) tasks += node.second;
    p.np = o.np > 0 ? o.np : tasks;
    if (p.np > tasks) {
      return absl::InvalidArgumentError(absl::StrCat("--np ", p.np, " is more than the ", tasks,
                                                     " task(s) of the allocation"));
    }
  } else {
    p.np = o.np > 0 ? o.np : 1;
  }
  return p;
}

absl::Status RunLaunch(const LaunchOptions& o) {
  ASSIGN_OR_RETURN(TrainArgs train, ParseTrainArgs(o.train_args));
  std::vector<std::string> overrides = train.overrides;
  ASSIGN_OR_RETURN(const TrainConfig config, LoadTrainConfig(train.config, overrides));
  if (o.np < 0) return absl::InvalidArgumentError("--np must be at least 1");
  ASSIGN_OR_RETURN(const Placement placement, Place(o));
  const int np = placement.np;
  if (config.data.batch_size % np != 0) {
    return absl::InvalidArgumentError(absl::StrCat("data.batch_size ", config.data.batch_size,
                                                   " is not divisible by ", np, " rank(s)",
                                                   o.np > 0 ? " (--np)" : " (the allocation's tasks)"));
  }
  const LaunchConfig& launch = config.launch;
  const bool loopback = launch.listen.rfind("127.", 0) == 0 || launch.listen.rfind("localhost:", 0) == 0 ||
                        launch.listen.rfind("[::1]:", 0) == 0;
  if (loopback && (HostfileNamesOtherHosts(o.hostfile) || placement.slurm_nodes.size() > 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "launch.listen is ", launch.listen, " (this host only), but ranks run on other hosts: "
        "--set launch.listen=0.0.0.0:0 (the ranks present the job's token), or an address of "
        "this host they can reach"));
  }
  const std::string launch_dir = config.output + "/launch";
  std::error_code error;
  fs::create_directories(launch_dir, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", launch_dir, ": ", error.message()));
  }
  CoordinatorOptions c;
  c.listen = launch.listen;
  ASSIGN_OR_RETURN(c.token, NewJobToken());
  ASSIGN_OR_RETURN(const std::string id, NewJobToken());
  c.job_id = id.substr(0, 12);
  c.heartbeat_s = launch.heartbeat_s;
  c.heartbeat_misses = static_cast<int>(launch.heartbeat_misses);
  c.hang_min_s = launch.hang_min_s;
  c.hang_factor = launch.hang_factor;
  c.startup_timeout_s = launch.startup_timeout_s;
  c.orphan_s = launch.orphan_s;
  c.checkpoint_root = config.output + "/checkpoints";
  c.keep = config.checkpoint.keep;
  c.keep_every = config.checkpoint.keep_every;
  c.global_batch = config.data.batch_size;
  ASSIGN_OR_RETURN(std::unique_ptr<Coordinator> coordinator, Coordinator::Start(c));
  std::fprintf(stderr, "clipscale launch: job %s, coordinator on %s, %d rank(s) by %s, output %s\n",
               c.job_id.c_str(), coordinator->address().c_str(), np, placement.launcher.c_str(),
               config.output.c_str());

  SupervisorOptions s;
  s.binary = SelfExecutable();
  s.train_args = train.passed;
  s.first_resume = train.resume;
  s.np = np;
  s.launcher = placement.launcher;
  s.hostfile = o.hostfile;
  s.slurm_nodes = placement.slurm_nodes;
  s.launcher_args = placement.launcher == "srun" ? o.srun_args : o.mpirun_args;
  s.job_id = c.job_id;
  s.max_restarts = o.max_restarts >= 0 ? o.max_restarts : launch.max_restarts;
  s.backoff_s = launch.backoff_s;
  s.backoff_max_s = launch.backoff_max_s;
  s.exclude_after = launch.exclude_after;
  s.global_batch = config.data.batch_size;
  s.micro_batch = config.data.micro_batch_size;
  s.status_path = launch_dir + "/status.json";
  const std::string root = c.checkpoint_root;
  s.resolve = [root](const std::string& resume) { return Resolve(resume, root); };
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (name.rfind("CLIPSCALE_", 0) == 0 && name != kCoordinatorVariable &&
        name != kJobIdVariable && name != kJobTokenVariable && name != "CLIPSCALE_ATTEMPT") {
      s.forward_env.push_back(name);
    }
  }
  SetExitCode(Supervise(s, *coordinator));
  return absl::OkStatus();
}

// --- clipscale status

void PrintStatus(const coordinator::JobStatus& s) {
  std::printf("job %s: %s, attempt %d, %d rank(s), step %lld", s.job_id().c_str(),
              s.state().c_str(), s.attempt(), s.world_size(), static_cast<long long>(s.step()));
  if (s.samples_per_s() > 0) std::printf(", %.1f samples/s", s.samples_per_s());
  std::printf("\ncoordinator: %s\n", s.address().c_str());
  if (s.last_checkpoint_step() >= 0 && !s.last_checkpoint().empty()) {
    std::printf("last committed checkpoint: step %lld, %s\n",
                static_cast<long long>(s.last_checkpoint_step()), s.last_checkpoint().c_str());
  } else {
    std::printf("last committed checkpoint: none in this launch\n");
  }
  std::printf("ranks:\n");
  for (const auto& r : s.ranks()) {
    std::printf("  rank %-3d %-16s pid %-8lld step %-7lld %-11s heartbeat %.1f s ago, progress "
                "%.1f s ago\n",
                r.rank(), r.host().c_str(), static_cast<long long>(r.pid()),
                static_cast<long long>(r.step()), r.phase().c_str(), r.since_heartbeat_s(),
                r.since_progress_s());
  }
  std::printf("restarts: %d\n", s.failures_size());
  for (const auto& f : s.failures()) {
    std::printf("  attempt %d: rank %d%s, %s, step %lld: %s\n", f.attempt(), f.rank(),
                f.host().empty() ? "" : (" on " + f.host()).c_str(), f.phase().c_str(),
                static_cast<long long>(f.step()), f.cause().c_str());
  }
  if (s.recovery_s() > 0) std::printf("last recovery: %.1f s from the fault to the first step after it\n", s.recovery_s());
  if (s.skipped_steps() > 0) {
    std::printf("skipped steps (non-finite): %lld\n", static_cast<long long>(s.skipped_steps()));
  }
  for (const auto& w : s.worst_shards()) {
    std::printf("bad samples: %lld in %s\n", static_cast<long long>(w.bad()), w.shard().c_str());
  }
}

absl::Status RunStatus(const std::string& target) {
  coordinator::JobStatus status;
  if (fs::is_directory(target)) {
    const std::string path = target + "/launch/status.json";
    auto text = ReadFile(path);
    if (!text.ok()) {
      return absl::NotFoundError(absl::StrCat(path, ": no launch status (was the run started with "
                                              "clipscale launch?)"));
    }
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(*text, &status, options).ok()) {
      return absl::DataLossError(absl::StrCat(path, ": not a launch status"));
    }
    struct stat info = {};
    ::stat(path.c_str(), &info);
    PrintStatus(status);
    std::printf("(%s, written %.0f s ago)\n", path.c_str(),
                std::difftime(std::time(nullptr), info.st_mtime));
    return absl::OkStatus();
  }
  // host:port: a live query, with the job's credentials from the environment.
  const char* job = std::getenv(kJobIdVariable);
  const char* token = std::getenv(kJobTokenVariable);
  if (!job || !token) {
    return absl::InvalidArgumentError(absl::StrCat(
        target, " is not a run folder; querying a coordinator's address needs ", kJobIdVariable,
        " and ", kJobTokenVariable, " in the environment"));
  }
  auto stub = coordinator::Coordinator::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  coordinator::StatusRequest request;
  request.mutable_auth()->set_job_id(job);
  request.mutable_auth()->set_token(token);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  const grpc::Status rpc = stub->GetStatus(&context, request, &status);
  if (!rpc.ok()) {
    return absl::UnavailableError(absl::StrCat(target, ": ", rpc.error_message()));
  }
  PrintStatus(status);
  return absl::OkStatus();
}

void Report(const absl::Status& status) {
  if (status.ok()) return;
  std::fprintf(stderr, "clipscale: error: %s\n", std::string(status.message()).c_str());
  SetExitCode(status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1);
}

}  // namespace

void RegisterLaunchCommands(CLI::App& app) {
  auto launch = std::make_shared<LaunchOptions>();
  CLI::App* l = app.add_subcommand(
      "launch", "Run `clipscale train` under a coordinator that restarts it from its last "
                "checkpoint when a rank dies or hangs");
  l->add_option("--np", launch->np,
                "Ranks (processes); default: the allocation's tasks inside Slurm, else 1");
  l->add_option("--launcher", launch->launcher,
                "How ranks start: auto (srun inside a Slurm allocation without --hostfile, else "
                "mpirun), mpirun, srun")
      ->capture_default_str();
  l->add_option("--hostfile", launch->hostfile, "mpirun hostfile (\"host slots=N\" lines)");
  l->add_option("--max-restarts", launch->max_restarts,
                "Restarts before giving up (default: launch.max_restarts of the recipe)");
  l->add_option("--mpirun-arg", launch->mpirun_args,
                "Extra mpirun argument (repeatable, one per flag: --mpirun-arg=--bind-to)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  l->add_option("--srun-arg", launch->srun_args,
                "Extra srun argument (repeatable: --srun-arg=--cpu-bind=cores)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  l->add_option("train_args", launch->train_args, "-- then the `clipscale train` arguments")
      ->required();
  l->callback([launch] { Report(RunLaunch(*launch)); });

  auto target = std::make_shared<std::string>();
  CLI::App* s = app.add_subcommand("status", "What a `clipscale launch` job is doing");
  s->add_option("run", *target, "The run's output folder, or a coordinator's HOST:PORT")->required();
  s->callback([target] { Report(RunStatus(*target)); });
}

}  // namespace clipscale::launcher
