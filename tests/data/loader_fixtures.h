// Shards for the index and loader tests: real JPEGs in img2dataset's layout,
// and a corpus of deliberately broken shards covering every bad-data rule.
#pragma once

#include <string>
#include <vector>

namespace clipscale::testing {

// Writes `shards` tars of `per_shard` samples (KEY.jpg 24-40 px, KEY.txt,
// KEY.json with "label") into `dir` as {00000..}.tar plus _stats.json side
// files; keys are img2dataset's 9-digit shard*10^4+i. Returns the paths.
std::vector<std::string> WriteJpegShards(const std::string& dir, int shards, int per_shard,
                                         int first_shard = 0);

// Writes `dir`/broken.tar: good samples interleaved with one sample per bad
// rule (corrupt, zero-byte, non-image, bomb, missing/empty/non-UTF-8 caption,
// repeated extension, no image, PNG bytes under .jpg which must decode), and
// `dir`/truncated.tar (cut mid-member) and `dir`/liar.tar (a header claiming
// 8 GiB). Returns the number of good samples in broken.tar.
int WriteBrokenShards(const std::string& dir);

// A JPEG of 24-40 px a side with smooth content, a pure function of `seed`.
std::string TestJpeg(uint64_t seed);

// A PNG whose header claims `width` x `height` (valid CRCs, a one-byte IDAT).
std::string PngHeaderOnly(int width, int height);

}  // namespace clipscale::testing
