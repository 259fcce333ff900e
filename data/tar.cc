#include "data/tar.h"

#include <array>
#include <cstring>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace clipscale {
namespace {

constexpr size_t kBlock = 512;
constexpr int64_t kFixedMtime = 1700000000;  // deterministic archives

struct Header {
  char name[100], mode[8], uid[8], gid[8], size[12], mtime[12], chksum[8], typeflag;
  char linkname[100], magic[6], version[2], uname[32], gname[32], devmajor[8], devminor[8];
  char prefix[155], pad[12];
};
static_assert(sizeof(Header) == kBlock);

void PutOctal(char* field, size_t width, uint64_t value) {
  // width-1 octal digits, NUL-terminated, zero-padded (as Python's tarfile).
  std::string digits(width - 1, '0');
  for (size_t i = width - 1; i-- > 0 && value;) {
    digits[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  std::memcpy(field, digits.data(), width - 1);
  field[width - 1] = '\0';
}

uint32_t Checksum(const Header& h) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(&h);
  uint32_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const bool in_chksum = i >= offsetof(Header, chksum) && i < offsetof(Header, chksum) + 8;
    sum += in_chksum ? ' ' : bytes[i];
  }
  return sum;
}

absl::StatusOr<uint64_t> ParseNumber(const char* field, size_t width) {
  // GNU base-256 for large values: high bit of the first byte set.
  if (static_cast<unsigned char>(field[0]) & 0x80) {
    uint64_t value = static_cast<unsigned char>(field[0]) & 0x7f;
    for (size_t i = 1; i < width; ++i) value = (value << 8) | static_cast<unsigned char>(field[i]);
    return value;
  }
  uint64_t value = 0;
  size_t i = 0;
  while (i < width && (field[i] == ' ' || field[i] == '\0')) ++i;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) value = value * 8 + (field[i] - '0');
  for (; i < width; ++i) {
    if (field[i] != ' ' && field[i] != '\0') return absl::DataLossError("bad octal number");
  }
  return value;
}

std::string CString(const char* field, size_t width) {
  return std::string(field, strnlen(field, width));
}

// "NN path=value\n" records; returns the path entry if present.
std::string PaxPath(const std::string& records) {
  size_t pos = 0;
  std::string path;
  while (pos < records.size()) {
    const size_t space = records.find(' ', pos);
    if (space == std::string::npos) break;
    size_t length = 0;
    if (!absl::SimpleAtoi(records.substr(pos, space - pos), &length) || length == 0) break;
    const std::string record = records.substr(space + 1, length - (space - pos) - 2);
    if (record.rfind("path=", 0) == 0) path = record.substr(5);
    pos += length;
  }
  return path;
}

}  // namespace

absl::StatusOr<TarWriter> TarWriter::Create(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return absl::InternalError(absl::StrCat("cannot create ", path));
  return TarWriter(file, path);
}

TarWriter::TarWriter(TarWriter&& other) noexcept
    : file_(other.file_), path_(std::move(other.path_)) {
  other.file_ = nullptr;
}

TarWriter::~TarWriter() {
  if (file_) std::fclose(file_);
}

absl::Status TarWriter::Write(const void* data, size_t size) {
  if (std::fwrite(data, 1, size, file_) != size) {
    return absl::InternalError(absl::StrCat("write error in ", path_));
  }
  return absl::OkStatus();
}

absl::Status TarWriter::Add(const std::string& name, const std::string& content) {
  Header h{};
  if (name.size() <= 100) {
    std::memcpy(h.name, name.data(), name.size());
  } else {
    const size_t slash = name.rfind('/', 155);
    if (slash == std::string::npos || name.size() - slash - 1 > 100) {
      return absl::InvalidArgumentError(absl::StrCat("tar member name too long: ", name));
    }
    std::memcpy(h.prefix, name.data(), slash);
    std::memcpy(h.name, name.data() + slash + 1, name.size() - slash - 1);
  }
  PutOctal(h.mode, 8, 0444);
  PutOctal(h.uid, 8, 0);
  PutOctal(h.gid, 8, 0);
  PutOctal(h.size, 12, content.size());
  PutOctal(h.mtime, 12, kFixedMtime);
  h.typeflag = '0';
  std::memcpy(h.magic, "ustar", 6);
  std::memcpy(h.version, "00", 2);
  PutOctal(h.devmajor, 8, 0);
  PutOctal(h.devminor, 8, 0);
  PutOctal(h.chksum, 7, Checksum(h));
  h.chksum[7] = ' ';
  RETURN_IF_ERROR(Write(&h, kBlock));
  RETURN_IF_ERROR(Write(content.data(), content.size()));
  static const std::array<char, kBlock> zeros{};
  return Write(zeros.data(), (kBlock - content.size() % kBlock) % kBlock);
}

absl::Status TarWriter::Close() {
  static const std::array<char, 2 * kBlock> zeros{};
  RETURN_IF_ERROR(Write(zeros.data(), zeros.size()));
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) return absl::InternalError(absl::StrCat("cannot close ", path_));
  return absl::OkStatus();
}

absl::Status ReadTar(const std::string& path,
                     const std::function<absl::Status(const TarMember&)>& visit) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open shard ", path));
  int64_t offset = 0;
  std::string long_name;
  auto corrupt = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat(path, ": ", why, " at byte ", offset));
  };
  while (true) {
    Header h;
    const size_t got = std::fread(&h, 1, kBlock, file.get());
    if (got == 0) return corrupt("archive ends without its end-of-archive blocks");
    if (got != kBlock) return corrupt("truncated header");
    if (h.name[0] == '\0') {
      static const Header zero{};
      if (std::memcmp(&h, &zero, kBlock) == 0) return absl::OkStatus();
    }
    auto stored = ParseNumber(h.chksum, 8);
    if (!stored.ok() || *stored != Checksum(h)) return corrupt("header checksum mismatch");
    auto size = ParseNumber(h.size, 12);
    if (!size.ok()) return corrupt("bad size field");
    TarMember member;
    member.offset = offset + kBlock;
    member.content.resize(*size);
    if (std::fread(member.content.data(), 1, *size, file.get()) != *size) {
      return corrupt("truncated member data");
    }
    const uint64_t padding = (kBlock - *size % kBlock) % kBlock;
    if (padding && std::fseek(file.get(), static_cast<long>(padding), SEEK_CUR) != 0) {
      return corrupt("truncated padding");
    }
    offset += kBlock + *size + padding;
    if (h.typeflag == 'L') {  // GNU long name for the next member
      long_name = CString(member.content.data(), member.content.size());
      continue;
    }
    if (h.typeflag == 'x') {  // pax extended header for the next member
      long_name = PaxPath(member.content);
      continue;
    }
    if (h.typeflag != '0' && h.typeflag != '\0') {  // dirs, links, global pax: skipped
      long_name.clear();
      continue;
    }
    if (!long_name.empty()) {
      member.name = std::move(long_name);
      long_name.clear();
    } else {
      const std::string prefix = CString(h.prefix, sizeof(h.prefix));
      const std::string name = CString(h.name, sizeof(h.name));
      member.name = prefix.empty() ? name : prefix + "/" + name;
    }
    RETURN_IF_ERROR(visit(member));
  }
}

}  // namespace clipscale
