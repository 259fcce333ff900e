#include "train/resume_check.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/config.h"
#include "yaml-cpp/yaml.h"

namespace clipscale {
namespace {

// "a.b.c" -> the leaf's YAML text, for every scalar or sequence in the tree.
void Flatten(const YAML::Node& node, const std::string& prefix,
             std::map<std::string, std::string>* out) {
  if (node.IsMap()) {
    for (const auto& item : node) {
      const std::string key = item.first.as<std::string>();
      Flatten(item.second, prefix.empty() ? key : prefix + "." + key, out);
    }
    return;
  }
  if (node.IsScalar()) {
    (*out)[prefix] = node.Scalar();
    return;
  }
  YAML::Emitter emitter;
  emitter << YAML::Flow << node;
  (*out)[prefix] = emitter.c_str();
}

std::map<std::string, std::string> FlattenYaml(const std::string& text, const std::string& prefix) {
  std::map<std::string, std::string> out;
  try {
    Flatten(YAML::Load(text), prefix, &out);
  } catch (const YAML::Exception& e) {
    out[prefix.empty() ? "(config)" : prefix] = absl::StrCat("unreadable: ", e.what());
  }
  return out;
}

}  // namespace

bool SafeToChangeOnResume(const std::string& key) {
  static const char* const kSafe[] = {
      // Reporting and where it goes.
      "output", "log_every", "eval.", "data.val", "data.classnames", "data.log_sample_keys",
      "checkpoint.", "resume", "launch.", "max_skipped_steps",
      // Speed only: the same batches and the same math, up to fp rounding for the
      // micro-batch and tile sizes (see the README's notes on bitwise resume).
      "data.workers", "data.prefetch_steps", "data.index_cache", "data.shard_cache",
      "data.micro_batch_size", "threads", "device", "grad_checkpointing", "distributed.",
      // Resolved into model_config, which is compared instead.
      "model", "model_overrides"};
  for (const char* safe : kSafe) {
    const std::string s = safe;
    if (s.back() == '.' ? key.rfind(s, 0) == 0 : key == s || key.rfind(s + ".", 0) == 0) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> ResumeConflicts(const proto::CheckpointState& state,
                                         const TrainConfig& config, uint64_t index_hash) {
  auto saved = FlattenYaml(state.config_yaml(), "");
  auto now = FlattenYaml(ConfigToYaml(config), "");
  for (auto& [k, v] : FlattenYaml(state.model_yaml(), "model_config")) saved[k] = v;
  for (auto& [k, v] : FlattenYaml(ConfigToYaml(config.model_config), "model_config")) now[k] = v;
  std::vector<std::string> conflicts;
  std::map<std::string, bool> keys;
  for (const auto& [k, v] : saved) keys[k] = true;
  for (const auto& [k, v] : now) keys[k] = true;
  for (const auto& [key, unused] : keys) {
    if (SafeToChangeOnResume(key)) continue;
    auto a = saved.find(key), b = now.find(key);
    const std::string was = a == saved.end() ? "(absent)" : a->second;
    const std::string is = b == now.end() ? "(absent)" : b->second;
    if (was != is) conflicts.push_back(absl::StrCat(key, ": ", was, " in the checkpoint, ", is, " now"));
  }
  if (state.index_hash() != index_hash) {
    conflicts.push_back(absl::StrFormat(
        "data.train: the training split changed since the checkpoint (index hash %016x, now "
        "%016x: shards added, removed or rewritten)",
        state.index_hash(), index_hash));
  }
  return conflicts;
}

}  // namespace clipscale
