#include "tests/data/loader_fixtures.h"

#include <zlib.h>

#include <cstring>
#include <fstream>

#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/random.h"
#include "data/image.h"
#include "data/synth.h"
#include "data/tar.h"

namespace clipscale::testing {
namespace {

void Check(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "fixture: %s\n", std::string(status.message()).c_str());
    std::abort();
  }
}


std::string Chunk(const std::string& type, const std::string& data) {
  std::string out;
  const uint32_t n = static_cast<uint32_t>(data.size());
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  const std::string body = type + data;
  out += body;
  const uint32_t crc = static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  return out;
}

// A real 8-bit RGB PNG (unfiltered rows, zlib-compressed).
std::string Png(int width, int height) {
  std::string raw;
  for (int y = 0; y < height; ++y) {
    raw.push_back('\0');
    for (int x = 0; x < width * 3; ++x) raw.push_back(static_cast<char>((x * 13 + y * 7) & 0xff));
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(size, '\0');
  compress(reinterpret_cast<Bytef*>(packed.data()), &size,
           reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()));
  packed.resize(size);
  std::string ihdr;
  for (uint32_t v : {static_cast<uint32_t>(width), static_cast<uint32_t>(height)}) {
    for (int i = 3; i >= 0; --i) ihdr.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);
  return std::string("\x89PNG\r\n\x1a\n", 8) + Chunk("IHDR", ihdr) + Chunk("IDAT", packed) +
         Chunk("IEND", "");
}

}  // namespace

std::string TestJpeg(uint64_t seed) {
  SplitMix64 rng(seed);
  Image image;
  image.width = 24 + static_cast<int>(rng.Below(17));
  image.height = 24 + static_cast<int>(rng.Below(17));
  image.rgb.resize(size_t(image.width) * image.height * 3);
  const uint8_t base = static_cast<uint8_t>(rng.Below(200));
  for (size_t i = 0; i < image.rgb.size(); ++i) {
    image.rgb[i] = static_cast<uint8_t>(base + (i * 7 + rng.Below(30)) % 50);
  }
  auto jpeg = EncodeJpeg(image, 90);
  Check(jpeg.status());
  return *jpeg;
}

std::string PngHeaderOnly(int width, int height) {
  std::string ihdr;
  for (uint32_t v : {static_cast<uint32_t>(width), static_cast<uint32_t>(height)}) {
    for (int i = 3; i >= 0; --i) ihdr.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
  // One IDAT holding one zero byte: decoders read the header, then run dry.
  std::string idat(16, '\0');
  uLongf size = idat.size();
  const Bytef zero = 0;
  compress(reinterpret_cast<Bytef*>(idat.data()), &size, &zero, 1);
  idat.resize(size);
  return std::string("\x89PNG\r\n\x1a\n", 8) + Chunk("IHDR", ihdr) + Chunk("IDAT", idat) +
         Chunk("IEND", "");
}

std::vector<std::string> WriteJpegShards(const std::string& dir, int shards, int per_shard,
                                         int first_shard) {
  std::vector<std::string> paths;
  for (int s = first_shard; s < first_shard + shards; ++s) {
    const std::string path = absl::StrFormat("%s/%05d.tar", dir, s);
    auto writer = TarWriter::Create(path);
    Check(writer.status());
    for (int i = 0; i < per_shard; ++i) {
      const std::string key = absl::StrFormat("%09d", s * 10000 + i);
      Check(writer->Add(key + ".jpg", TestJpeg(uint64_t(s) * 100003 + i)));
      Check(writer->Add(key + ".json", absl::StrFormat("{\"key\": \"%s\", \"label\": %d}", key,
                                                       (s * per_shard + i) % 7)));
      Check(writer->Add(key + ".txt", absl::StrFormat("sample %d of shard %d", i, s)));
    }
    Check(writer->Close());
    Check(WriteFileAtomically(absl::StrFormat("%s/%05d_stats.json", dir, s),
                              absl::StrFormat("{\"successes\": %d}", per_shard)));
    paths.push_back(path);
  }
  return paths;
}

int WriteBrokenShards(const std::string& dir) {
  auto writer = TarWriter::Create(dir + "/broken.tar");
  Check(writer.status());
  int good = 0;
  auto add = [&](const std::string& key, const std::string& image_ext, const std::string* image,
                 const std::string* caption) {
    if (image) Check(writer->Add(key + "." + image_ext, *image));
    if (caption) Check(writer->Add(key + ".txt", *caption));
  };
  auto good_sample = [&](int i) {
    const std::string image = TestJpeg(7000 + i), caption = "a good sample";
    add(absl::StrFormat("good%02d", i), "jpg", &image, &caption);
    ++good;
  };
  const std::string caption = "a caption";
  std::string corrupt = TestJpeg(1);
  corrupt.resize(corrupt.size() / 2);  // truncated scan data
  for (size_t i = 200; i < corrupt.size(); i += 3) corrupt[i] = '\xff';
  const std::string zero, text_bytes = "this is not an image at all";
  const std::string bomb = PngHeaderOnly(40000, 40000);
  const std::string png = PngHeaderOnly(1, 1);  // its IDAT runs dry: corrupt pixel data
  const std::string invalid_utf8 = "caf\xc3(", blank = " \t ";
  const std::string good_image = TestJpeg(2);
  for (int i = 0; i < 4; ++i) good_sample(i);
  add("bad_corrupt", "jpg", &corrupt, &caption);
  add("bad_zero", "jpg", &zero, &caption);
  add("bad_text", "jpg", &text_bytes, &caption);
  good_sample(4);
  add("bad_bomb", "png", &bomb, &caption);
  add("bad_nopixels", "png", &png, &caption);
  add("bad_nocaption", "jpg", &good_image, nullptr);
  add("bad_utf8", "jpg", &good_image, &invalid_utf8);
  add("bad_blank", "jpg", &good_image, &blank);
  good_sample(5);
  add("bad_noimage", "jpg", nullptr, &caption);  // dropped by the index
  const std::string sniffed = Png(30, 20);  // PNG bytes under a .jpg name decode
  add("sniffed", "jpg", &sniffed, &caption);
  ++good;
  // A repeated extension: the first member wins, the second is dropped.
  Check(writer->Add("dup.jpg", TestJpeg(3)));
  Check(writer->Add("dup.txt", "the first caption"));
  Check(writer->Add("dup.txt", "the second caption"));
  ++good;
  good_sample(6);
  Check(writer->Close());

  // Truncated in the middle of its third sample's image.
  auto t = TarWriter::Create(dir + "/truncated.tar");
  Check(t.status());
  for (int i = 0; i < 3; ++i) {
    const std::string key = absl::StrFormat("trunc%d", i);
    Check(t->Add(key + ".jpg", TestJpeg(100 + i)));
    Check(t->Add(key + ".txt", "kept before the damage"));
  }
  Check(t->Close());
  auto bytes = ReadFile(dir + "/truncated.tar");
  Check(bytes.status());
  std::ofstream(dir + "/truncated.tar", std::ios::binary | std::ios::trunc)
      << bytes->substr(0, bytes->find("trunc2.jpg") + 512 + 100);  // 100 bytes into its data

  // A header claiming an 8 GiB member in a file of a few KB.
  auto l = TarWriter::Create(dir + "/liar.tar");
  Check(l.status());
  Check(l->Add("liar0.jpg", TestJpeg(200)));
  Check(l->Add("liar0.txt", "before the lie"));
  Check(l->Add("liar1.jpg", std::string(10, 'x')));
  Check(l->Close());
  auto liar = ReadFile(dir + "/liar.tar");
  Check(liar.status());
  // The third header: find it by its name, rewrite its size field, fix the checksum.
  const size_t header = liar->find("liar1.jpg");
  std::string& h = *liar;
  std::memcpy(&h[header + 124], "77777777777", 11);  // octal: 8 GiB - 1
  h[header + 135] = '\0';
  std::memset(&h[header + 148], ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += static_cast<unsigned char>(h[header + i]);
  std::snprintf(&h[header + 148], 8, "%06o", sum);
  h[header + 155] = ' ';
  std::ofstream(dir + "/liar.tar", std::ios::binary | std::ios::trunc) << h;
  return good;
}

}  // namespace clipscale::testing
