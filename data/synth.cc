#include "data/synth.h"

#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/random.h"
#include "core/status.h"
#include "data/tar.h"
#include "nlohmann/json.hpp"

namespace clipscale {
namespace {

struct Rgb {
  double r, g, b;
};

const std::vector<Rgb>& ColourValues() {
  static const std::vector<Rgb> values = {{220, 40, 40},  {40, 170, 60},  {40, 80, 220},
                                          {235, 210, 40}, {140, 60, 190}, {245, 140, 30}};
  return values;
}
const std::vector<Rgb>& BackgroundValues() {
  static const std::vector<Rgb> values = {{128, 128, 128}, {238, 238, 232}, {24, 24, 28}};
  return values;
}

// Vertices of a regular polygon (or star) around the object, in pixels.
std::vector<std::pair<double, double>> Outline(int shape, const SceneObject& o, int size) {
  std::vector<std::pair<double, double>> points;
  auto add = [&](double r, double angle) {
    points.emplace_back(o.cx * size + r * std::cos(o.rotation + angle),
                        o.cy * size + r * std::sin(o.rotation + angle));
  };
  const double r = o.radius * size;
  if (shape == 4) {  // a plus-shaped cross: arms of half-width r/3
    const double a = r / 3;
    const double xy[12][2] = {{a, r},   {a, a},   {r, a},   {r, -a}, {a, -a}, {a, -r},
                              {-a, -r}, {-a, -a}, {-r, -a}, {-r, a}, {-a, a}, {-a, r}};
    for (const auto& p : xy) add(std::hypot(p[0], p[1]), std::atan2(p[1], p[0]));
    return points;
  }
  const int sides[] = {0, 4, 3, 10};  // circle (not a polygon), square, triangle, star
  const int n = sides[shape];
  for (int i = 0; i < n; ++i) add(r * ((shape == 3 && i % 2) ? 0.45 : 1.0), 2 * M_PI * i / n);
  return points;
}

bool Inside(int shape, const SceneObject& o, int size,
            const std::vector<std::pair<double, double>>& poly, double x, double y) {
  if (shape == 0) {
    const double dx = x - o.cx * size, dy = y - o.cy * size, r = o.radius * size;
    return dx * dx + dy * dy <= r * r;
  }
  bool inside = false;  // even-odd rule
  for (size_t i = 0, j = poly.size() - 1; i < poly.size(); j = i++) {
    const auto [xi, yi] = poly[i];
    const auto [xj, yj] = poly[j];
    if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

const char* CountWord(size_t n) {
  static const char* words[] = {"zero", "one", "two", "three", "four"};
  return words[std::min<size_t>(n, 4)];
}

nlohmann::json SampleJson(const std::string& key, const Scene& scene, const std::string& caption,
                          int size) {
  return {{"key", key},
          {"caption", caption},
          {"status", "success"},
          {"error_message", nullptr},
          {"width", size},
          {"height", size},
          {"original_width", size},
          {"original_height", size},
          {"url", absl::StrCat("synth://", key)},
          {"shape", SynthShapes()[scene.shape]},
          {"colour", SynthColours()[scene.colour]},
          {"count", scene.objects.size()},
          {"size", scene.large ? "large" : "small"},
          {"background", SynthBackgrounds()[scene.background]},
          {"label", SceneClass(scene)},
          {"class", SynthClassNames()[SceneClass(scene)]}};
}

absl::Status WriteSplit(const SynthOptions& o, const std::string& name, uint64_t split,
                        int64_t count) {
  const std::filesystem::path dir = std::filesystem::path(o.out) / name;
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", dir.string(), ": ", error.message()));
  }
  // img2dataset: key = shard * 10^ceil(log10(per_shard)) + index, 9 digits.
  const int64_t key_base = static_cast<int64_t>(std::pow(10, std::ceil(std::log10(o.per_shard))));
  for (int64_t shard = 0; shard * o.per_shard < count; ++shard) {
    const std::string stem = absl::StrFormat("%05d", shard);
    const std::string tar_path = (dir / (stem + ".tar")).string();
    ASSIGN_OR_RETURN(TarWriter writer, TarWriter::Create(tar_path + ".tmp"));
    const int64_t first = shard * o.per_shard;
    const int64_t n = std::min<int64_t>(o.per_shard, count - first);
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t index = static_cast<uint64_t>(first + i);
      const Scene scene = RandomScene(o.seed, split, index, o.variety);
      const std::string key = absl::StrFormat("%09d", shard * key_base + i);
      ASSIGN_OR_RETURN(std::string jpeg,
                       EncodeJpeg(RenderScene(scene, o.image_size, MixSeed(o.seed, split, ~index)),
                                  o.jpeg_quality));
      const std::string caption = SceneCaption(scene);
      // Members in sorted-extension order, as webdataset's TarWriter writes them.
      RETURN_IF_ERROR(writer.Add(key + ".jpg", jpeg));
      RETURN_IF_ERROR(writer.Add(key + ".json", SampleJson(key, scene, caption, o.image_size).dump()));
      RETURN_IF_ERROR(writer.Add(key + ".txt", caption));
    }
    RETURN_IF_ERROR(writer.Close());
    std::filesystem::rename(tar_path + ".tmp", tar_path, error);
    if (error) {
      return absl::InternalError(absl::StrCat("cannot rename ", tar_path, ".tmp to ", tar_path,
                                              ": ", error.message()));
    }
    nlohmann::json stats = {{"count", n},           {"successes", n},
                            {"failed_to_download", 0}, {"failed_to_resize", 0},
                            {"status_dict", {{"success", n}}}};
    RETURN_IF_ERROR(WriteFileAtomically((dir / (stem + "_stats.json")).string(), stats.dump(4)));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& SynthShapes() {
  static const std::vector<std::string> v = {"circle", "square", "triangle", "star", "cross"};
  return v;
}
const std::vector<std::string>& SynthColours() {
  static const std::vector<std::string> v = {"red", "green", "blue", "yellow", "purple", "orange"};
  return v;
}
const std::vector<std::string>& SynthBackgrounds() {
  static const std::vector<std::string> v = {"grey", "white", "black"};
  return v;
}

std::vector<std::string> SynthClassNames() {
  std::vector<std::string> names;
  for (const auto& colour : SynthColours()) {
    for (const auto& shape : SynthShapes()) names.push_back(colour + " " + shape);
  }
  return names;
}

int SceneClass(const Scene& scene) {
  return scene.colour * static_cast<int>(SynthShapes().size()) + scene.shape;
}

Scene RandomScene(uint64_t seed, uint64_t split, uint64_t index, const SceneVariety& variety) {
  SplitMix64 rng(MixSeed(seed, split, index));
  Scene scene;
  scene.shape = static_cast<int>(rng.Below(static_cast<int>(SynthShapes().size())));
  scene.colour = static_cast<int>(rng.Below(static_cast<int>(SynthColours().size())));
  scene.background = static_cast<int>(rng.Below(variety.backgrounds));
  scene.large = rng.Below(variety.sizes) == 1;
  const int count = 1 + static_cast<int>(rng.Below(variety.max_objects));
  const double radius = scene.large ? 0.2 + 0.03 * rng.Uniform() : 0.11 + 0.02 * rng.Uniform();
  for (int attempt = 0; static_cast<int>(scene.objects.size()) < count && attempt < 200; ++attempt) {
    SceneObject o{radius + (1 - 2 * radius) * rng.Uniform(), radius + (1 - 2 * radius) * rng.Uniform(),
                  radius, 2 * M_PI * rng.Uniform()};
    bool overlaps = false;
    for (const auto& other : scene.objects) {
      overlaps |= std::hypot(o.cx - other.cx, o.cy - other.cy) < 2.1 * radius;
    }
    if (!overlaps) scene.objects.push_back(o);
  }
  if (variety.varied_captions) {
    scene.says_count = rng.Below(2) == 1;
    scene.says_size = rng.Below(2) == 1;
    scene.says_background = rng.Below(2) == 1;
  }
  return scene;
}

Image RenderScene(const Scene& scene, int size, uint64_t texture_seed) {
  Image image;
  image.width = image.height = size;
  image.rgb.resize(static_cast<size_t>(size) * size * 3);
  const Rgb bg = BackgroundValues()[scene.background];
  const Rgb fg = ColourValues()[scene.colour];
  std::vector<std::vector<std::pair<double, double>>> outlines;
  for (const auto& o : scene.objects) outlines.push_back(Outline(scene.shape, o, size));
  SplitMix64 noise(texture_seed);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      int covered = 0;
      bool near = false;  // only pixels within an object's bounding circle need sampling
      for (const auto& o : scene.objects) {
        near |= std::hypot(x + 0.5 - o.cx * size, y + 0.5 - o.cy * size) <= o.radius * size + 1.5;
      }
      for (int sy = 0; near && sy < 4; ++sy) {
        for (int sx = 0; sx < 4; ++sx) {
          const double px = x + (sx + 0.5) / 4, py = y + (sy + 0.5) / 4;
          for (size_t k = 0; k < scene.objects.size(); ++k) {
            if (Inside(scene.shape, scene.objects[k], size, outlines[k], px, py)) {
              ++covered;
              break;
            }
          }
        }
      }
      const double a = covered / 16.0;
      const double grain = (noise.Uniform() - 0.5) * 12 + 6 * std::sin((x + 2 * y) * 0.3);
      const double shade = 1.0 - 0.15 * (static_cast<double>(y) / size);  // soft light falloff
      uint8_t* p = &image.rgb[(static_cast<size_t>(y) * size + x) * 3];
      const double rgb[3] = {fg.r * shade * a + (bg.r + grain) * (1 - a),
                             fg.g * shade * a + (bg.g + grain) * (1 - a),
                             fg.b * shade * a + (bg.b + grain) * (1 - a)};
      for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(std::clamp(std::lround(rgb[c]), 0L, 255L));
    }
  }
  return image;
}

std::string SceneCaption(const Scene& scene) {
  const size_t n = scene.objects.size();
  const std::string& shape = SynthShapes()[scene.shape];
  const std::string noun = absl::StrCat(scene.says_size ? (scene.large ? "large " : "small ") : "",
                                        SynthColours()[scene.colour], " ", shape,
                                        n == 1 ? "" : (shape == "cross" ? "es" : "s"));
  std::string caption;
  if (n == 1) {
    caption = absl::StrCat(std::string("aeiou").find(noun[0]) == std::string::npos ? "a " : "an ", noun);
  } else {
    caption = scene.says_count ? absl::StrCat(CountWord(n), " ", noun) : noun;
  }
  if (scene.says_background) {
    absl::StrAppend(&caption, " on a ", SynthBackgrounds()[scene.background], " background");
  }
  return caption;
}

absl::StatusOr<std::string> EncodeJpeg(const Image& image, int quality) {
  tjhandle handle = tjInitCompress();
  if (!handle) return absl::InternalError("tjInitCompress failed");
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const int rc = tjCompress2(handle, image.rgb.data(), image.width, 0, image.height, TJPF_RGB,
                             &buffer, &size, TJSAMP_420, quality, TJFLAG_ACCURATEDCT);
  std::string out;
  if (rc == 0) out.assign(reinterpret_cast<char*>(buffer), size);
  const std::string error = rc == 0 ? "" : tjGetErrorStr2(handle);
  tjFree(buffer);
  tjDestroy(handle);
  if (rc != 0) return absl::InternalError(absl::StrCat("JPEG encoding failed: ", error));
  return out;
}

absl::Status WriteSynthDataset(const SynthOptions& o) {
  if (o.out.empty()) return absl::InvalidArgumentError("--out is required");
  if (o.train < 0 || o.val < 0 || o.per_shard <= 0 || o.image_size < 16) {
    return absl::InvalidArgumentError("train/val must be >= 0, per_shard > 0, image_size >= 16");
  }
  const SceneVariety& v = o.variety;
  if (v.backgrounds < 1 || v.backgrounds > static_cast<int>(SynthBackgrounds().size()) ||
      v.sizes < 1 || v.sizes > 2 || v.max_objects < 1 || v.max_objects > 3) {
    return absl::InvalidArgumentError("backgrounds must be 1 to 3, sizes 1 or 2, max_objects 1 to 3");
  }
  RETURN_IF_ERROR(WriteSplit(o, "train", 0, o.train));
  RETURN_IF_ERROR(WriteSplit(o, "val", 1, o.val));
  std::string classes;
  for (const auto& name : SynthClassNames()) absl::StrAppend(&classes, name, "\n");
  return WriteFileAtomically((std::filesystem::path(o.out) / "val" / "classnames.txt").string(),
                             classes);
}

}  // namespace clipscale
