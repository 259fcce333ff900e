// The streaming loader against OpenCLIP's data pipeline and against raw
// libjpeg-turbo, on the same img2dataset-like shards, one core each:
//   build/bench/loader_bench [COUNT]
// For 256 px and 512 px JPEG shards: images/s of decode + RandomResizedCrop +
// normalise to 224 px (+ tokenising the caption) through StreamLoader with one
// decode thread; the same through open_clip's webdataset + PIL + torchvision
// pipeline (bench/py/loader_bench.py, one process, one torch thread); and raw
// full-size tjDecompress2 of the same JPEG bytes from memory. Prints the
// ratios: ours / OpenCLIP per core, and our time per image over raw decode's.
#include <turbojpeg.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "data/dataset_index.h"
#include "data/stream_loader.h"
#include "data/tar.h"
#include "nlohmann/json.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::string RunPython(const std::string& dir, int size, int count) {
  const std::string command = std::string(CLIPSCALE_BENCH_PYTHON) + " " + CLIPSCALE_BENCH_SCRIPT +
                              " " + dir + " " + std::to_string(size) + " " +
                              std::to_string(count);
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return "";
  std::string out;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  return pclose(pipe) == 0 ? out : "";
}

// Images/s through the loader: one decode thread, training transform, 224 px.
double LoaderRate(const std::string& dir, const clipscale::ClipTokenizer& tokenizer,
                  int64_t count) {
  auto index = clipscale::DatasetIndex::OpenOrBuild(dir, dir + "/index_cache");
  if (!index.ok()) return 0;
  clipscale::StreamLoaderOptions o;
  o.global_batch = 32;
  o.slice_size = 32;
  o.image_size = 224;
  o.workers = 1;
  o.prefetch_steps = 2;
  // One loader for both passes, as OpenCLIP's side reuses its pipeline: the
  // second pass (after Seek) runs on warm batch buffers, as a training run
  // does after its first steps.
  auto loader = clipscale::StreamLoader::Create(*index, &tokenizer, o);
  if (!loader.ok()) return 0;
  double best = 0;
  for (int pass = 0; pass < 2; ++pass) {
    if (!(*loader)->Seek(0, 0).ok()) return 0;
    const auto start = Clock::now();
    const int64_t steps = count / 32;
    for (int64_t s = 0; s < steps; ++s) {
      if (!(*loader)->Next().ok()) return 0;
    }
    best = std::max(best, steps * 32 / Seconds(start));
  }
  return best;
}

// Images/s of tjDecompress2 at full size, from memory.
double RawDecodeRate(const std::string& dir) {
  std::vector<std::string> jpegs;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".tar") continue;
    (void)clipscale::ReadTar(entry.path().string(), [&](const clipscale::TarMember& m) {
      if (m.name.size() > 4 && m.name.substr(m.name.size() - 4) == ".jpg") jpegs.push_back(m.content);
      return absl::OkStatus();
    });
  }
  tjhandle tj = tjInitDecompress();
  std::vector<unsigned char> rgb;
  double best = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const auto start = Clock::now();
    for (const std::string& jpeg : jpegs) {
      int w = 0, h = 0, sub = 0, space = 0;
      const auto* bytes = reinterpret_cast<const unsigned char*>(jpeg.data());
      tjDecompressHeader3(tj, bytes, jpeg.size(), &w, &h, &sub, &space);
      rgb.resize(size_t(w) * h * 3);
      tjDecompress2(tj, bytes, jpeg.size(), rgb.data(), w, 0, h, TJPF_RGB, 0);
    }
    best = std::max(best, jpegs.size() / Seconds(start));
  }
  tjDestroy(tj);
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int count = argc > 1 ? std::atoi(argv[1]) : 1000;
  auto tokenizer = clipscale::ClipTokenizer::LoadDefault();
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "loader_bench: %s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  std::printf("%d img2dataset-like samples per size, one core per pipeline, 224 px crops\n", count);
  for (int size : {256, 512}) {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("loader_bench_" + std::to_string(size))).string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const std::string json = RunPython(dir, size, count);
    if (json.empty()) {
      std::fprintf(stderr, "loader_bench: %s failed\n", CLIPSCALE_BENCH_SCRIPT);
      return 1;
    }
    const double openclip = nlohmann::json::parse(json)["images_per_s"];
    const double ours = LoaderRate(dir, *tokenizer, count);
    const double raw = RawDecodeRate(dir);
    if (ours <= 0 || raw <= 0) {
      std::fprintf(stderr, "loader_bench: the loader failed on %s\n", dir.c_str());
      return 1;
    }
    std::printf(
        "%d px: clipscale %.0f img/s, OpenCLIP (webdataset+PIL+torchvision) %.0f img/s: %.2fx; "
        "raw full-size tjDecompress2 %.0f img/s: pipeline time per image %+.0f%% over raw decode\n",
        size, ours, openclip, ours / openclip, raw, 100 * (raw / ours - 1));
    std::filesystem::remove_all(dir);
  }
  return 0;
}
