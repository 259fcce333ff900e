// Tokens per second of ClipTokenizer against open_clip.tokenize on the same
// caption-like strings, both single-threaded and measured in the same run (the
// Python side runs through the venv interpreter, bench/py/tokenizer_bench.py).
//
//   tokenizer_bench [--count N] [--repeats R] [--threads T]
//
// Prints cold (first call, empty BPE cache) and warm (best of R) rates for both,
// their ratios, and a multi-threaded clipscale rate. Fails if any row differs.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "data/tokenizer.h"

namespace clipscale {
namespace {

constexpr int kContext = ClipTokenizer::kDefaultContextLength;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

std::vector<std::string> ReadCaptions(const std::string& path) {
  std::string data = ReadFile(path);
  size_t pos = 0;
  auto u32 = [&] {
    uint32_t v;
    CS_CHECK(pos + 4 <= data.size());
    std::memcpy(&v, data.data() + pos, 4);
    pos += 4;
    return v;
  };
  std::vector<std::string> captions(u32());
  for (auto& caption : captions) {
    uint32_t n = u32();
    CS_CHECK(pos + n <= data.size());
    caption = data.substr(pos, n);
    pos += n;
  }
  return captions;
}

// Tokens a row holds: SOT through EOT (ids of 0 can be real tokens, so count
// up to the EOT rather than the non-zero entries).
int64_t CountTokens(const std::vector<int32_t>& rows, int32_t eot) {
  int64_t total = 0;
  for (size_t r = 0; r < rows.size() / kContext; ++r) {
    const int32_t* row = rows.data() + r * kContext;
    total += std::find(row, row + kContext, eot) - row + 1;
  }
  return total;
}

double Seconds(const std::function<void()>& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string RunPython(const std::string& dir, int count, int repeats) {
  std::string command =
      absl::StrCat("'", CLIPSCALE_PYTHON, "' '", CLIPSCALE_SOURCE_DIR,
                   "/bench/py/tokenizer_bench.py' '", dir, "' ", count, " ", repeats);
  FILE* pipe = popen(command.c_str(), "r");
  CS_CHECK_MSG(pipe != nullptr, "cannot run ", command);
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  CS_CHECK_MSG(pclose(pipe) == 0, "failed: ", command);
  return out;
}

void TokenizeThreaded(const ClipTokenizer& tokenizer, const std::vector<std::string>& captions,
                      int threads, std::vector<int32_t>* rows) {
  std::vector<std::thread> workers;
  size_t per = (captions.size() + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    size_t begin = std::min(captions.size(), t * per), end = std::min(captions.size(), begin + per);
    workers.emplace_back([&, begin, end] {
      std::vector<std::string> slice(captions.begin() + begin, captions.begin() + end);
      tokenizer.TokenizeBatch(slice, kContext, rows->data() + begin * kContext);
    });
  }
  for (auto& worker : workers) worker.join();
}

struct Measurement {
  std::vector<std::string> captions;
  std::string reference;  // open_clip's rows, int32 [n, 77]
  double py_cold = 0, py_warm = 0;
  double cold = 0, warm = 1e30, threaded = 1e30;
};

void MeasureOpenClip(int count, int repeats, Measurement* m) {
  std::string dir = (std::filesystem::temp_directory_path() /
                     absl::StrCat("clipscale_tokenizer_bench_", getpid()))
                        .string();
  std::filesystem::create_directories(dir);
  auto python = nlohmann::json::parse(RunPython(dir, count, repeats));
  m->captions = ReadCaptions(dir + "/captions.bin");
  m->reference = ReadFile(dir + "/rows.bin");
  std::filesystem::remove_all(dir);
  m->py_cold = python["cold_s"].get<double>();
  m->py_warm = m->py_cold;
  for (double s : python["warm_s"].get<std::vector<double>>()) m->py_warm = std::min(m->py_warm, s);
}

void MeasureClipscale(const ClipTokenizer& tokenizer, int repeats, int threads, Measurement* m,
                      std::vector<int32_t>* rows) {
  rows->assign(m->captions.size() * kContext, -1);
  auto same = [&] {
    return m->reference.size() == rows->size() * sizeof(int32_t) &&
           std::memcmp(m->reference.data(), rows->data(), m->reference.size()) == 0;
  };
  auto run = [&] { tokenizer.TokenizeBatch(m->captions, kContext, rows->data()); };
  m->cold = Seconds(run);  // a fresh tokenizer: empty BPE cache, like open_clip's first call
  CS_CHECK_MSG(same(), "clipscale's rows differ from open_clip's");
  for (int r = 0; r < repeats; ++r) m->warm = std::min(m->warm, Seconds(run));
  rows->assign(rows->size(), -1);
  for (int r = 0; r < repeats; ++r) {
    m->threaded = std::min(
        m->threaded, Seconds([&] { TokenizeThreaded(tokenizer, m->captions, threads, rows); }));
  }
  CS_CHECK_MSG(same(), "multi-threaded rows differ from open_clip's");
}

int Main(int argc, char** argv) {
  int count = 20000, repeats = 3, threads = std::max(2u, std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--count")) count = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  Measurement m;
  MeasureOpenClip(count, repeats, &m);
  auto tokenizer = ClipTokenizer::LoadDefault();
  CS_CHECK_OK(tokenizer.status());
  std::vector<int32_t> rows;
  MeasureClipscale(*tokenizer, repeats, threads, &m, &rows);

  double tokens = static_cast<double>(CountTokens(rows, tokenizer->eot_token()));
  auto stats = tokenizer->cache_stats();
  std::printf("%zu captions, %.0f tokens (SOT..EOT), rows identical to open_clip's\n",
              m.captions.size(), tokens);
  std::printf("open_clip.tokenize, 1 thread:  cold %10.0f tokens/s  warm %10.0f tokens/s\n",
              tokens / m.py_cold, tokens / m.py_warm);
  std::printf("clipscale, 1 thread:           cold %10.0f tokens/s  warm %10.0f tokens/s\n",
              tokens / m.cold, tokens / m.warm);
  std::printf("ratio clipscale/open_clip:     cold %10.1fx         warm %10.1fx\n",
              m.py_cold / m.cold, m.py_warm / m.warm);
  std::printf("clipscale, %d threads:          %10.0f tokens/s (%.1fx its 1-thread warm rate)\n",
              threads, tokens / m.threaded, m.warm / m.threaded);
  std::printf("BPE cache: %ld hits, %ld misses\n", static_cast<long>(stats.hits),
              static_cast<long>(stats.misses));
  return 0;
}

}  // namespace
}  // namespace clipscale

int main(int argc, char** argv) { return clipscale::Main(argc, argv); }
