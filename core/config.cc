#include "core/config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace clipscale {

std::string ConfigReader::Where(const YAML::Node& node, const std::string& path) const {
  // An override replaces a subtree; any path at or below it came from --set.
  for (const std::string& key : source_->overridden) {
    if (path == key || absl::StartsWith(path, key + ".") || absl::StartsWith(path, key + "[")) {
      return absl::StrCat("--set ", key);
    }
  }
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return source_->file;
  return absl::StrCat(source_->file, ":", mark.line + 1, ":", mark.column + 1);
}

void ConfigReader::RejectUnknownKeys() {
  if (!node_.IsMap()) return;
  for (const auto& entry : node_) {
    const std::string key = entry.first.Scalar();
    if (seen_.count(key)) continue;
    std::string path = path_.empty() ? key : path_ + "." + key;
    errors_->push_back(absl::StrCat(Where(entry.first, path), ": unknown key '", path,
                                    "' (known here: ", absl::StrJoin(seen_, ", "), ")"));
  }
}

absl::Status ApplyOverrides(YAML::Node& root, const std::vector<std::string>& overrides,
                            ConfigSource* source) {
  for (const std::string& item : overrides) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", item, ": expected key.path=value"));
    }
    const std::string key = item.substr(0, eq);
    YAML::Node value;
    try {
      value = YAML::Load(item.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", item, ": ", e.msg));
    }
    if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    // yaml-cpp nodes are handles: walking with reassignment would rebind, so
    // keep the chain of parents and assign at the leaf.
    std::vector<std::string> parts = absl::StrSplit(key, '.');
    std::vector<YAML::Node> chain{root};
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      YAML::Node parent = chain.back();
      if (!parent.IsMap()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set ", item, ": '", parts[i], "' is inside a value, not a section"));
      }
      if (!parent[parts[i]].IsDefined() || parent[parts[i]].IsNull()) {
        parent[parts[i]] = YAML::Node(YAML::NodeType::Map);
      }
      chain.push_back(parent[parts[i]]);
    }
    YAML::Node leaf_parent = chain.back();
    if (!leaf_parent.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", item, ": the parent of '", parts.back(), "' is not a section"));
    }
    leaf_parent[parts.back()] = value;
    source->overridden.insert(key);
  }
  return absl::OkStatus();
}

std::string ConfigKeyWhere(const YAML::Node& root, const ConfigSource& source,
                           const std::string& key_path) {
  YAML::Node node;  // reset() rebinds a handle; operator= would overwrite the value
  node.reset(root);
  for (const absl::string_view part : absl::StrSplit(key_path, '.')) {
    if (!node.IsMap()) return source.file;
    const YAML::Node& parent = node;
    YAML::Node child = parent[std::string(part)];
    if (!child.IsDefined()) return source.file;
    node.reset(child);
  }
  std::vector<std::string> unused;
  return ConfigReader(&source, root, "", &unused).Where(node, key_path);
}

absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open config file ", path));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
}

}  // namespace clipscale
