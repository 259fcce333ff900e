// The Slurm allocation a process runs in, as its batch script sees it:
// nodes and tasks per node (for `clipscale launch` under sbatch, which starts
// its ranks with srun and leaves out a failing node with --exclude).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

// SLURM_TASKS_PER_NODE's compressed form, "2(x3),1" -> {2, 2, 2, 1}.
// InvalidArgument, quoting the text, when it is not of that form or names
// more than `max_nodes` nodes.
absl::StatusOr<std::vector<int>> ExpandTasksPerNode(const std::string& text, int max_nodes = 100000);

// The allocation's nodes (from `scontrol show hostnames $SLURM_JOB_NODELIST`,
// so every form of node list Slurm writes is read by Slurm) with their task
// counts (SLURM_TASKS_PER_NODE). FailedPrecondition outside an allocation.
absl::StatusOr<std::vector<std::pair<std::string, int>>> AllocationNodes(
    const std::map<std::string, std::string>& env);

// SIGKILL to every task of the allocation's job steps named `step_name`
// (scancel), then waits up to `wait_s` for them to be gone. A step whose srun
// was killed would otherwise keep its ranks, and the allocation's CPUs, for
// Slurm's KillWait (30 s by default), and the next step would queue behind it.
// Returns how many steps it signalled.
int KillSlurmSteps(const std::string& job_id, const std::string& step_name, double wait_s = 15);

}  // namespace clipscale
