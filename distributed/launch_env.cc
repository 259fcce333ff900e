#include "distributed/launch_env.h"

#include <algorithm>
#include <charconv>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/status.h"

extern char** environ;

namespace clipscale {
namespace {

struct LauncherVars {
  const char* launcher;
  const char* rank;
  const char* size;
  const char* local_rank;
  const char* local_rank_fallback;  // srun --mpi=pmi2 sets PMI_* but not MPI_LOCALRANKID
  const char* local_size;           // ranks on this node (absent: unknown)
  // Set only in a launched task: a Slurm batch script has SLURM_PROCID=0 and
  // SLURM_NTASKS=N too, but it is no rank (srun sets SLURM_STEP_ID in tasks).
  const char* only_with = nullptr;
};

constexpr LauncherVars kLaunchers[] = {
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     nullptr, "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "SLURM_LOCALID", "MPI_LOCALNRANKS"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", nullptr, "SLURM_NTASKS_PER_NODE",
     "SLURM_STEP_ID"},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", nullptr, "LOCAL_WORLD_SIZE"},
};

// nullopt when absent; an error when present but not a whole decimal int.
absl::StatusOr<std::optional<int>> GetInt(const EnvMap& env, const char* name) {
  auto it = env.find(name);
  if (it == env.end()) return std::optional<int>();
  const std::string& text = it->second;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return absl::InvalidArgumentError(absl::StrCat(name, "='", text, "' is not an integer"));
  }
  return std::optional<int>(value);
}

absl::StatusOr<LaunchEnv> FromLauncher(const EnvMap& env, const LauncherVars& vars) {
  ASSIGN_OR_RETURN(std::optional<int> rank, GetInt(env, vars.rank));
  ASSIGN_OR_RETURN(std::optional<int> size, GetInt(env, vars.size));
  ASSIGN_OR_RETURN(std::optional<int> local, GetInt(env, vars.local_rank));
  if (!local && vars.local_rank_fallback != nullptr) {
    ASSIGN_OR_RETURN(local, GetInt(env, vars.local_rank_fallback));
  }
  if (!size) {
    return absl::InvalidArgumentError(
        absl::StrCat(vars.rank, " is set but ", vars.size, " is not"));
  }
  LaunchEnv out;
  out.launcher = vars.launcher;
  out.rank = *rank;
  out.world_size = *size;
  if (out.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(vars.size, "=", out.world_size, " < 1"));
  }
  if (out.rank < 0 || out.rank >= out.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(vars.rank, "=", out.rank, " is outside [0, ", out.world_size, ")"));
  }
  if (!local && out.world_size > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(vars.local_rank, " is not set; the local rank picks the GPU"));
  }
  out.local_rank = local.value_or(0);
  ASSIGN_OR_RETURN(std::optional<int> local_size, GetInt(env, vars.local_size));
  out.local_size = std::clamp(local_size.value_or(1), 1, out.world_size);
  if (out.local_rank < 0 || out.local_rank >= out.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(vars.local_rank, "=", out.local_rank,
                                                   " is outside [0, ", out.world_size, ")"));
  }
  return out;
}

}  // namespace

absl::StatusOr<LaunchEnv> ParseLaunchEnv(const EnvMap& env) {
  for (const LauncherVars& vars : kLaunchers) {
    if (env.count(vars.rank) && (!vars.only_with || env.count(vars.only_with))) {
      return FromLauncher(env, vars);
    }
  }
  return LaunchEnv();
}

absl::StatusOr<int> DeviceForLocalRank(int local_rank, int visible_devices) {
  if (visible_devices < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device: cuda, but this rank (local rank ", local_rank,
        ") sees no CUDA device (CUDA_VISIBLE_DEVICES, --gpus-per-task)"));
  }
  return std::max(0, local_rank) % visible_devices;
}

EnvMap ProcessEnvironment() {
  EnvMap env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string text(*entry);
    size_t eq = text.find('=');
    if (eq == std::string::npos) continue;
    env.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return env;
}

}  // namespace clipscale
