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

// A spec expanding to more names than this is a typo in a range, not a dataset
// (LAION-400M is 41,455 shards): the cap stops `{0..999999999}` before it allocates.
constexpr int64_t kMaxShardNames = 2'000'000;

// The number of names "a{00..03}b{1..2}" expands to, without expanding it.
absl::StatusOr<int64_t> CountBraces(const std::string& pattern, size_t from) {
  const size_t open = pattern.find('{', from);
  if (open == std::string::npos) return 1;
  const size_t close = pattern.find('}', open);
  const size_t dots = pattern.find("..", open);
  if (close == std::string::npos || dots == std::string::npos || dots > close) {
    return absl::InvalidArgumentError(absl::StrCat("bad brace range in shard spec '", pattern, "'"));
  }
  const std::string lo = pattern.substr(open + 1, dots - open - 1);
  const std::string hi = pattern.substr(dots + 2, close - dots - 2);
  int64_t first = 0, last = 0;
  if (lo.empty() || hi.empty() || lo.size() > 18 || hi.size() > 18 ||
      !absl::SimpleAtoi(lo, &first) || !absl::SimpleAtoi(hi, &last) || first < 0 ||
      last < first) {
    return absl::InvalidArgumentError(absl::StrCat("bad brace range in shard spec '", pattern, "'"));
  }
  ASSIGN_OR_RETURN(int64_t rest, CountBraces(pattern, close + 1));
  const int64_t here = last - first + 1;
  if (here > kMaxShardNames || rest > kMaxShardNames / here) {
    return absl::InvalidArgumentError(absl::StrCat("shard spec '", pattern, "' expands to more than ",
                                                   kMaxShardNames, " names"));
  }
  return here * rest;
}

// "a{00..03}b" -> a00b a01b a02b a03b; no braces -> the pattern itself.
// CountBraces has validated the pattern and bounded the result.
void ExpandBraces(const std::string& pattern, std::vector<std::string>* out) {
  const size_t open = pattern.find('{');
  if (open == std::string::npos) {
    out->push_back(pattern);
    return;
  }
  const size_t close = pattern.find('}', open);
  const size_t dots = pattern.find("..", open);
  const std::string lo = pattern.substr(open + 1, dots - open - 1);
  int64_t first = 0, last = 0;
  (void)absl::SimpleAtoi(lo, &first);
  (void)absl::SimpleAtoi(pattern.substr(dots + 2, close - dots - 2), &last);
  for (int64_t i = first; i <= last; ++i) {
    const std::string number = absl::StrFormat("%0*d", static_cast<int>(lo.size()), i);
    ExpandBraces(pattern.substr(0, open) + number + pattern.substr(close + 1), out);
  }
}

absl::StatusOr<std::vector<std::string>> ExpandSource(const std::string& part) {
  const bool remote = part.rfind("pipe:", 0) == 0 || part.rfind("http://", 0) == 0 ||
                      part.rfind("https://", 0) == 0;
  if (!remote && part.find("://") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard source '", part, "': only http://, https:// and pipe: are supported"));
  }
  std::error_code error;
  if (!remote && std::filesystem::is_directory(part, error)) {
    std::vector<std::string> found;
    std::filesystem::directory_iterator it(part, error), end;
    for (; !error && it != end; it.increment(error)) {
      if (it->path().extension() == ".tar") found.push_back(it->path().string());
    }
    if (error) {
      return absl::NotFoundError(absl::StrCat("cannot list shard folder ", part, ": ",
                                              error.message()));
    }
    if (found.empty()) return absl::NotFoundError(absl::StrCat("no .tar shards in ", part));
    std::sort(found.begin(), found.end());
    return found;
  }
  ASSIGN_OR_RETURN(int64_t count, CountBraces(part, 0));
  std::vector<std::string> expanded;
  expanded.reserve(static_cast<size_t>(count));
  ExpandBraces(part, &expanded);
  return expanded;
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

absl::StatusOr<std::vector<std::vector<std::string>>> ExpandShardSources(
    const std::string& spec) {
  std::vector<std::vector<std::string>> sources;
  int64_t total = 0;
  const std::vector<std::string> parts = absl::StrSplit(spec, "::", absl::SkipEmpty());
  for (const std::string& part : parts) {
    ASSIGN_OR_RETURN(auto paths, ExpandSource(part));
    total += static_cast<int64_t>(paths.size());
    if (total > kMaxShardNames) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard spec '", spec, "' expands to more than ", kMaxShardNames, " names"));
    }
    sources.push_back(std::move(paths));
  }
  if (sources.empty()) return absl::InvalidArgumentError(absl::StrCat("empty shard spec '", spec, "'"));
  return sources;
}

absl::StatusOr<std::vector<std::string>> ExpandShardSpec(const std::string& spec) {
  ASSIGN_OR_RETURN(auto sources, ExpandShardSources(spec));
  std::vector<std::string> paths;
  for (auto& source : sources) paths.insert(paths.end(), source.begin(), source.end());
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
