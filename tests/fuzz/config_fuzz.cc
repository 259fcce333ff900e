// YAML from users (config files, --set overrides): binding either fails with a
// message or gives a struct whose effective config (what is written next to
// checkpoints) binds again to the same struct. The input is YAML text, then
// optionally "\n---set\n" and one override per line.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "core/config.h"
#include "models/model_config.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// Every kind of field the binder knows, nested.
struct Item {
  std::string name;
  int64_t count = 0;
  template <class V>
  void Visit(V& v) {
    v("name", name);
    v("count", count);
  }
};
struct Everything {
  int i = 1;
  int64_t big = 2;
  double x = 0.5;
  float f = 0.25f;
  bool flag = false;
  std::string text = "t";
  std::vector<int> ints;
  std::vector<std::string> words;
  std::optional<double> maybe;
  std::vector<Item> items;
  clipscale::ModelConfig model;
  template <class V>
  void Visit(V& v) {
    v("i", i);
    v("big", big);
    v("x", x);
    v("f", f);
    v("flag", flag);
    v("text", text);
    v("ints", ints);
    v("words", words);
    v("maybe", maybe);
    v("items", items);
    v("model", model);
  }
};

template <class T>
void RoundTrip(const std::string& yaml, const std::vector<std::string>& overrides) {
  auto first = clipscale::ParseConfigString<T>(yaml, "fuzz.yaml", overrides);
  if (!first.ok()) {
    FUZZ_CHECK(first.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(!first.status().message().empty());
    return;
  }
  const std::string effective = clipscale::ConfigToYaml(*first);
  auto second = clipscale::ParseConfigString<T>(effective, "effective.yaml");
  if (!second.ok()) {
    std::fprintf(stderr, "effective config does not bind again:\n%s\n%s\n", effective.c_str(),
                 std::string(second.status().message()).c_str());
    std::abort();
  }
  FUZZ_CHECK(clipscale::ConfigToYaml(*second) == effective);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find("\n---set\n");
  const std::string yaml = input.substr(0, split);
  std::vector<std::string> overrides;
  if (split != std::string::npos) {
    overrides = absl::StrSplit(input.substr(split + 8), '\n', absl::SkipEmpty());
  }
  RoundTrip<Everything>(yaml, overrides);
  RoundTrip<clipscale::ModelConfig>(yaml, overrides);
  if (auto model = clipscale::ParseConfigString<clipscale::ModelConfig>(yaml, "m.yaml");
      model.ok()) {
    (void)clipscale::ValidateModelConfig(*model);
  }
  return 0;
}
