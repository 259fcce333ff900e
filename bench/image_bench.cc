// Decode + eval preprocess of a 1024x768 JPEG, measured in the same run
// against raw libjpeg-turbo (the call DecodeImage wraps: reported as our
// overhead over it) and against Pillow + open_clip's transform (a speed
// ratio). Single-threaded on both sides.
//
//   image_bench [repeats]
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/random.h"
#include "data/augment.h"
#include "data/image.h"
#include "data/transforms.h"

namespace {

template <class Fn>
double MedianSeconds(Fn&& fn, int repeats) {
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string RunPython(const std::string& out_dir, int repeats) {
  std::string command = std::string(CLIPSCALE_BENCH_PYTHON) + " " + CLIPSCALE_BENCH_SCRIPT + " " +
                        out_dir + " " + std::to_string(repeats);
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  char buffer[4096];
  size_t n;
  while (pipe && (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  if (pipe == nullptr || pclose(pipe) != 0) return "";
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::stoi(argv[1]) : 50;
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("clipscale_image_bench_" + std::to_string(getpid())))
                              .string();
  std::filesystem::create_directories(dir);
  const std::string python_json = RunPython(dir, repeats);
  if (python_json.empty()) {
    std::fprintf(stderr, "image_bench: %s failed\n", CLIPSCALE_BENCH_SCRIPT);
    return 1;
  }
  nlohmann::json pillow = nlohmann::json::parse(python_json);
  std::ifstream in(dir + "/photo.jpg", std::ios::binary);
  const std::string jpeg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove_all(dir);

  clipscale::Image image = *clipscale::DecodeImage(jpeg);
  std::vector<uint8_t> raw(image.rgb.size());
  tjhandle tj = tjInitDecompress();
  const double raw_s = MedianSeconds(
      [&] {
        tjDecompress2(tj, reinterpret_cast<const unsigned char*>(jpeg.data()), jpeg.size(),
                      raw.data(), image.width, 0, image.height, TJPF_RGB, 0);
      },
      repeats);
  tjDestroy(tj);
  const double decode_s = MedianSeconds([&] { (void)*clipscale::DecodeImage(jpeg); }, repeats);
  std::vector<float> out(3 * 224 * 224);
  const double eval_s =
      MedianSeconds([&] { clipscale::EvalTransform(image, 224, out.data()); }, repeats);
  const double scaled_s = MedianSeconds(
      [&] { clipscale::EvalTransform(*clipscale::DecodeImageScaled(jpeg, 224), 224, out.data()); },
      repeats);

  // The training transform the streaming loader runs on a 256-px sample after
  // its decode: RandomResizedCrop (scale 0.9-1) + Pillow-exact bicubic to 224
  // + normalise (its cost bounds the loader's overhead over a raw decode).
  const clipscale::Image small =
      clipscale::CenterCrop(clipscale::ResizeShortestSide(image, 256), 256);
  clipscale::SplitMix64 rng(1);
  const double train_s =
      MedianSeconds([&] { clipscale::TrainTransform(small, 224, {}, rng, out.data()); }, repeats);

  const double pil_decode = pillow["decode_s"], pil_eval = pillow["eval_s"];
  std::printf("image %dx%d JPEG, median of %d, single thread\n", image.width, image.height,
              repeats);
  // DecodeImage wraps tjDecompress2, so it cannot be faster than it: the
  // difference is our overhead (header parsing, checks, the output buffer),
  // and a negative one is timing noise.
  std::printf(
      "decode: raw tjDecompress2 %.2f ms, DecodeImage (which wraps it) %.2f ms: overhead %+.1f%% "
      "(%+.2f ms); Pillow %.2f ms (%.2fx ours)\n",
      raw_s * 1e3, decode_s * 1e3, 100 * (decode_s / raw_s - 1), (decode_s - raw_s) * 1e3,
      pil_decode * 1e3, pil_decode / decode_s);
  std::printf("eval transform: EvalTransform %.2f ms, open_clip %.2f ms (%.2fx ours)\n",
              eval_s * 1e3, pil_eval * 1e3, pil_eval / eval_s);
  std::printf(
      "decode+eval: exact %.2f ms, Pillow+open_clip %.2f ms (%.2fx ours); "
      "scaled-decode fast path (not exact) %.2f ms\n",
      (decode_s + eval_s) * 1e3, (pil_decode + pil_eval) * 1e3,
      (pil_decode + pil_eval) / (decode_s + eval_s), scaled_s * 1e3);
  std::printf("train transform of a 256x256 image to 224 px: TrainTransform %.3f ms\n",
              train_s * 1e3);
  return 0;
}
