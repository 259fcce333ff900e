#include "data/examples.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/logging.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace clipscale {
namespace {

const char* const kImageExtensions[] = {"jpg", "jpeg", "png", "webp"};

void AddSample(ShardSample&& sample, const std::string& shard, DataStats* stats,
               std::vector<Example>* out) {
  const std::string* bytes = nullptr;
  for (const char* ext : kImageExtensions) {
    auto it = sample.fields.find(ext);
    if (it != sample.fields.end()) bytes = &it->second;
  }
  auto caption = sample.fields.find("txt");
  if (!bytes || caption == sample.fields.end()) {
    ++stats->missing_fields;
    return;
  }
  if (!IsUsableCaption(caption->second)) {
    ++stats->bad_captions;
    LogWarning(shard, ": sample ", sample.key, ": empty or non-UTF-8 caption, skipped");
    return;
  }
  auto image = DecodeImage(*bytes);
  if (!image.ok()) {
    ++stats->bad_images;
    LogWarning(shard, ": sample ", sample.key, ": ", std::string(image.status().message()),
               ", skipped");
    return;
  }
  Example example{sample.key, std::move(*image), caption->second, -1};
  auto json = sample.fields.find("json");
  if (json != sample.fields.end()) {
    auto parsed = nlohmann::json::parse(json->second, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object() && parsed.contains("label") && parsed["label"].is_number_integer()) {
      example.label = parsed["label"].get<int>();
    }
  }
  ++stats->samples;
  out->push_back(std::move(example));
}

}  // namespace

absl::StatusOr<std::vector<Example>> LoadExamples(const std::string& spec, DataStats* stats) {
  ASSIGN_OR_RETURN(std::vector<std::string> shards, ExpandShardSpec(spec));
  std::vector<Example> examples;
  for (const std::string& shard : shards) {
    absl::Status status = ReadShardSamples(
        shard, [&](ShardSample&& sample) { AddSample(std::move(sample), shard, stats, &examples); });
    if (!status.ok()) {
      ++stats->bad_shards;
      LogWarning("skipping the rest of shard: ", std::string(status.message()));
    }
  }
  if (examples.empty()) {
    return absl::NotFoundError(absl::StrCat("no usable samples in ", spec));
  }
  return examples;
}

absl::StatusOr<std::vector<std::string>> LoadClassnames(const std::string& spec,
                                                        const std::string& classnames) {
  std::string path = classnames;
  if (path.empty()) {
    if (!std::filesystem::is_directory(spec)) return std::vector<std::string>();
    path = (std::filesystem::path(spec) / "classnames.txt").string();
    if (!std::filesystem::exists(path)) return std::vector<std::string>();
  }
  return ReadNonEmptyLines(path);
}

}  // namespace clipscale
