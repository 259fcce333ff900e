#include "core/tfrecord.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/crc32c.h"

namespace clipscale {
namespace {

void AppendLittleEndian(uint64_t value, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xFFu));
}

uint64_t LoadLittleEndian(const char* p, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return value;
}

constexpr size_t kHeaderBytes = 12;  // length + its CRC
constexpr size_t kFooterBytes = 4;   // data CRC

}  // namespace

void AppendTfRecord(const std::string& data, std::string* out) {
  const size_t start = out->size();
  AppendLittleEndian(data.size(), 8, out);
  AppendLittleEndian(MaskCrc32c(Crc32c(out->data() + start, 8)), 4, out);
  out->append(data);
  AppendLittleEndian(MaskCrc32c(Crc32c(data)), 4, out);
}

absl::StatusOr<std::vector<std::string>> ParseTfRecords(const std::string& stream) {
  std::vector<std::string> records;
  size_t pos = 0;
  while (pos < stream.size()) {
    const std::string where = absl::StrCat("TFRecord at byte ", pos);
    if (stream.size() - pos < kHeaderBytes)
      return absl::DataLossError(where + ": truncated header");
    const char* header = stream.data() + pos;
    if (UnmaskCrc32c(static_cast<uint32_t>(LoadLittleEndian(header + 8, 4))) != Crc32c(header, 8)) {
      return absl::DataLossError(where + ": length checksum mismatch");
    }
    const uint64_t length = LoadLittleEndian(header, 8);
    const size_t left = stream.size() - pos - kHeaderBytes;
    if (left < kFooterBytes || length > left - kFooterBytes) {
      return absl::DataLossError(where + ": truncated data");
    }
    std::string data = stream.substr(pos + kHeaderBytes, length);
    const char* footer = stream.data() + pos + kHeaderBytes + length;
    if (UnmaskCrc32c(static_cast<uint32_t>(LoadLittleEndian(footer, 4))) != Crc32c(data)) {
      return absl::DataLossError(where + ": data checksum mismatch");
    }
    records.push_back(std::move(data));
    pos += kHeaderBytes + length + kFooterBytes;
  }
  return records;
}

}  // namespace clipscale
