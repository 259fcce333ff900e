// Tar shards from the outside world: ScanTar, ReadTar and WebDataset grouping
// must agree with each other and never read outside the archive.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/tar.h"
#include "data/webdataset.h"
#include "tests/fuzz/fuzz_util.h"

using clipscale::fuzz::MemFile;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static MemFile file;
  const std::string& path = file.Set(data, size);

  std::vector<clipscale::TarEntry> entries;
  const absl::Status scan = clipscale::ScanTar(path, [&](const clipscale::TarEntry& e) {
    FUZZ_CHECK(e.offset % 512 == 0 && e.offset <= size && e.size <= size - e.offset);
    entries.push_back(e);
    return absl::OkStatus();
  });
  FUZZ_CHECK(scan.ok() || scan.code() == absl::StatusCode::kDataLoss);

  size_t index = 0;
  const absl::Status read = clipscale::ReadTar(path, [&](const clipscale::TarMember& m) {
    FUZZ_CHECK(index < entries.size());
    const clipscale::TarEntry& e = entries[index++];
    FUZZ_CHECK(m.name == e.name && m.content.size() == e.size);
    FUZZ_CHECK(m.content == std::string(reinterpret_cast<const char*>(data) + e.offset, e.size));
    return absl::OkStatus();
  });
  FUZZ_CHECK(index == entries.size() && read.code() == scan.code());

  size_t grouped = 0;
  const absl::Status samples =
      clipscale::ReadShardSamples(path, [&](clipscale::ShardSample&& sample) {
        FUZZ_CHECK(!sample.fields.empty());
        grouped += sample.fields.size();
      });
  FUZZ_CHECK(samples.code() == scan.code());
  FUZZ_CHECK(grouped <= entries.size());
  return 0;
}
