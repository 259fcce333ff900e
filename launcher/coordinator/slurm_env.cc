#include "launcher/coordinator/slurm_env.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/process_info.h"
#include "core/status.h"

namespace clipscale {
namespace {

std::string Get(const std::map<std::string, std::string>& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

// stdout of a shell command and its exit status.
std::pair<std::string, int> Capture(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {"", -1};
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  return {out, ::pclose(pipe)};
}

// The ids ("123.4") of the job's steps named `name`.
std::vector<std::string> StepsNamed(const std::string& job_id, const std::string& name) {
  std::vector<std::string> ids;
  const auto [out, status] =
      Capture(absl::StrCat("squeue -h --steps -j ", ShellQuote(job_id), " -o '%i %j' 2>/dev/null"));
  if (status != 0) return ids;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipWhitespace())) {
    const std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() == 2 && fields[1] == name) ids.push_back(fields[0]);
  }
  return ids;
}

}  // namespace

int KillSlurmSteps(const std::string& job_id, const std::string& step_name, double wait_s) {
  if (job_id.empty()) return 0;
  const std::vector<std::string> steps = StepsNamed(job_id, step_name);
  for (const std::string& id : steps) {
    (void)Capture(absl::StrCat("scancel --quiet --signal=KILL ", ShellQuote(id), " 2>&1"));
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  while (!steps.empty() && !StepsNamed(job_id, step_name).empty() &&
         std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return static_cast<int>(steps.size());
}

absl::StatusOr<std::vector<int>> ExpandTasksPerNode(const std::string& text, int max_nodes) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("SLURM_TASKS_PER_NODE='", text, "' is not of the form 2(x3),1"));
  };
  std::vector<int> tasks;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int count = 0, repeat = 1;
    const size_t open = part.find("(x");
    if (open != absl::string_view::npos) {
      if (part.back() != ')' ||
          !absl::SimpleAtoi(part.substr(open + 2, part.size() - open - 3), &repeat)) {
        return bad();
      }
      part = part.substr(0, open);
    }
    if (!absl::SimpleAtoi(part, &count) || count < 1 || repeat < 1) return bad();
    if (repeat > max_nodes - static_cast<int>(tasks.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("SLURM_TASKS_PER_NODE='", text, "' names more than ", max_nodes, " nodes"));
    }
    tasks.insert(tasks.end(), static_cast<size_t>(repeat), count);
  }
  if (tasks.empty()) return bad();
  return tasks;
}

absl::StatusOr<std::vector<std::pair<std::string, int>>> AllocationNodes(
    const std::map<std::string, std::string>& env) {
  const std::string nodelist = Get(env, "SLURM_JOB_NODELIST");
  const std::string per_node = Get(env, "SLURM_TASKS_PER_NODE");
  if (Get(env, "SLURM_JOB_ID").empty() || nodelist.empty() || per_node.empty()) {
    return absl::FailedPreconditionError(
        "not inside a Slurm allocation (SLURM_JOB_ID, SLURM_JOB_NODELIST and "
        "SLURM_TASKS_PER_NODE are not all set)");
  }
  ASSIGN_OR_RETURN(const std::vector<int> tasks, ExpandTasksPerNode(per_node));
  const std::string command = absl::StrCat("scontrol show hostnames ", ShellQuote(nodelist));
  const auto [out, status] = Capture(command);
  std::vector<std::string> hosts = absl::StrSplit(out, '\n', absl::SkipWhitespace());
  if (status != 0 || hosts.size() != tasks.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        command, " gave ", hosts.size(), " host(s) (exit ", status, ") for SLURM_TASKS_PER_NODE='",
        per_node, "' (", tasks.size(), " node(s))"));
  }
  std::vector<std::pair<std::string, int>> nodes;
  for (size_t i = 0; i < hosts.size(); ++i) {
    nodes.emplace_back(std::string(absl::StripAsciiWhitespace(hosts[i])), tasks[i]);
  }
  return nodes;
}

}  // namespace clipscale
