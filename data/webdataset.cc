#include "data/webdataset.h"

#include <algorithm>
#include <filesystem>

#include <utf8proc.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "data/tar.h"

namespace clipscale {
namespace {

// "a{00..03}b" -> a00b a01b a02b a03b; no braces -> the pattern itself.
absl::StatusOr<std::vector<std::string>> ExpandBraces(const std::string& pattern) {
  const size_t open = pattern.find('{');
  if (open == std::string::npos) return std::vector<std::string>{pattern};
  const size_t close = pattern.find('}', open);
  const size_t dots = pattern.find("..", open);
  if (close == std::string::npos || dots == std::string::npos || dots > close) {
    return absl::InvalidArgumentError(absl::StrCat("bad brace range in shard spec '", pattern, "'"));
  }
  const std::string lo = pattern.substr(open + 1, dots - open - 1);
  const std::string hi = pattern.substr(dots + 2, close - dots - 2);
  int64_t first = 0, last = 0;
  if (!absl::SimpleAtoi(lo, &first) || !absl::SimpleAtoi(hi, &last) || last < first) {
    return absl::InvalidArgumentError(absl::StrCat("bad brace range in shard spec '", pattern, "'"));
  }
  std::vector<std::string> out;
  for (int64_t i = first; i <= last; ++i) {
    const std::string number = absl::StrFormat("%0*d", static_cast<int>(lo.size()), i);
    ASSIGN_OR_RETURN(auto rest, ExpandBraces(pattern.substr(close + 1)));
    for (const auto& tail : rest) out.push_back(pattern.substr(0, open) + number + tail);
  }
  return out;
}

}  // namespace

bool SplitMemberName(const std::string& name, std::string* key, std::string* extension) {
  const size_t slash = name.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = name.find('.', base);
  if (dot == std::string::npos || dot == base) return false;
  *key = name.substr(0, dot);
  *extension = absl::AsciiStrToLower(name.substr(dot + 1));
  return true;
}

absl::Status ReadShardSamples(const std::string& path,
                              const std::function<void(ShardSample&&)>& visit) {
  ShardSample current;
  auto emit = [&] {
    if (!current.fields.empty()) visit(std::move(current));
    current = ShardSample();
  };
  absl::Status status = ReadTar(path, [&](const TarMember& member) {
    const std::string base = std::filesystem::path(member.name).filename().string();
    if (base.size() >= 4 && base.rfind("__", 0) == 0) return absl::OkStatus();
    std::string key, extension;
    if (!SplitMemberName(member.name, &key, &extension)) return absl::OkStatus();
    if (key != current.key) {
      emit();
      current.key = key;
    }
    current.fields[extension] = member.content;
    return absl::OkStatus();
  });
  // A truncated shard's last sample may be missing members: drop it.
  if (status.ok()) emit();
  return status;
}

absl::StatusOr<std::vector<std::string>> ExpandShardSpec(const std::string& spec) {
  std::vector<std::string> paths;
  const std::vector<std::string> parts = absl::StrSplit(spec, "::", absl::SkipEmpty());
  for (const std::string& part : parts) {
    if (std::filesystem::is_directory(part)) {
      std::vector<std::string> found;
      for (const auto& entry : std::filesystem::directory_iterator(part)) {
        if (entry.path().extension() == ".tar") found.push_back(entry.path().string());
      }
      if (found.empty()) return absl::NotFoundError(absl::StrCat("no .tar shards in ", part));
      std::sort(found.begin(), found.end());
      paths.insert(paths.end(), found.begin(), found.end());
      continue;
    }
    ASSIGN_OR_RETURN(auto expanded, ExpandBraces(part));
    paths.insert(paths.end(), expanded.begin(), expanded.end());
  }
  if (paths.empty()) return absl::InvalidArgumentError(absl::StrCat("empty shard spec '", spec, "'"));
  return paths;
}

bool IsUsableCaption(const std::string& text) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t remaining = static_cast<utf8proc_ssize_t>(text.size());
  bool visible = false;
  while (remaining > 0) {
    utf8proc_int32_t code = 0;
    const utf8proc_ssize_t n = utf8proc_iterate(bytes, remaining, &code);
    if (n <= 0) return false;  // invalid or overlong sequence, or a surrogate
    const auto category = utf8proc_category(code);
    visible |= category != UTF8PROC_CATEGORY_ZS && category != UTF8PROC_CATEGORY_CC;
    bytes += n;
    remaining -= n;
  }
  return visible;
}

}  // namespace clipscale
