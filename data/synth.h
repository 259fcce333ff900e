// The embedded demo dataset: procedurally drawn scenes (shapes, colours,
// sizes, counts, backgrounds) with natural captions, written as WebDataset
// shards exactly as img2dataset lays them out. Deterministic by seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/image.h"

namespace clipscale {

struct SceneObject {
  double cx = 0, cy = 0, radius = 0, rotation = 0;  // in [0,1] image units, radians
};

struct Scene {
  int shape = 0;       // index into SynthShapes()
  int colour = 0;      // index into SynthColours()
  int background = 0;  // index into SynthBackgrounds()
  bool large = false;
  std::vector<SceneObject> objects;  // 1 to 3, same shape and colour
  // What the caption says besides colour and shape.
  bool says_count = true, says_size = true, says_background = true;
};

const std::vector<std::string>& SynthShapes();       // "circle", "square", ...
const std::vector<std::string>& SynthColours();      // "red", "green", ...
const std::vector<std::string>& SynthBackgrounds();  // "grey", "white", ...

// Which attribute values scenes draw from (the first `backgrounds` of
// SynthBackgrounds(), small only or small and large, 1 to `max_objects`).
struct SceneVariety {
  int backgrounds = 3;
  int sizes = 2;
  int max_objects = 3;
  // Captions mention the count, size and background each with probability 1/2
  // (the shape and colour always), as alt-text varies in what it says.
  bool varied_captions = false;
};

// The scene for sample `index` of a split; a pure function of its arguments.
Scene RandomScene(uint64_t seed, uint64_t split, uint64_t index, const SceneVariety& variety = {});

// Draws the scene (anti-aliased by 4x4 supersampling, with a mild background
// texture so JPEG has real content to code).
Image RenderScene(const Scene& scene, int size, uint64_t texture_seed);

// "two small red triangles on a grey background"
std::string SceneCaption(const Scene& scene);

// Zero-shot class of a scene: colour x shape, e.g. "red triangle".
int SceneClass(const Scene& scene);
std::vector<std::string> SynthClassNames();

struct SynthOptions {
  std::string out;          // output folder: train/ and val/ are created inside
  int64_t train = 2000;     // samples
  int64_t val = 500;
  uint64_t seed = 0;
  int image_size = 96;
  int per_shard = 1000;     // samples per .tar
  int jpeg_quality = 90;
  SceneVariety variety;
};

// Writes <out>/{train,val}/{shard:05d}.tar (KEY.jpg, KEY.txt, KEY.json),
// {shard:05d}_stats.json, and for val classnames.txt. Byte-identical for the
// same options.
absl::Status WriteSynthDataset(const SynthOptions& options);

// Encodes RGB pixels as a baseline JPEG (4:2:0) with libjpeg-turbo.
absl::StatusOr<std::string> EncodeJpeg(const Image& image, int quality);

}  // namespace clipscale
