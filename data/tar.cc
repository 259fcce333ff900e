#include "data/tar.h"

#include <sys/stat.h>

#include <array>
#include <cstring>
#include <memory>
#include <optional>

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
  // 0xff starts a negative number; a value past 64 bits would wrap to a small,
  // believable one. Both are damage.
  if (static_cast<unsigned char>(field[0]) & 0x80) {
    if (static_cast<unsigned char>(field[0]) == 0xff) return absl::DataLossError("negative number");
    uint64_t value = static_cast<unsigned char>(field[0]) & 0x7f;
    for (size_t i = 1; i < width; ++i) {
      if (value >> 56) return absl::DataLossError("number does not fit 64 bits");
      value = (value << 8) | static_cast<unsigned char>(field[i]);
    }
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

// The records of a pax extended header ("LEN key=value\n") that we honour.
struct PaxRecords {
  std::string path;
  std::optional<uint64_t> size;
};

absl::StatusOr<PaxRecords> ParsePax(const std::string& records) {
  PaxRecords out;
  size_t pos = 0;
  while (pos < records.size()) {
    const size_t space = records.find(' ', pos);
    size_t length = 0;
    if (space == std::string::npos ||
        !absl::SimpleAtoi(records.substr(pos, space - pos), &length) || length <= space - pos + 1 ||
        pos + length > records.size() || records[pos + length - 1] != '\n') {
      return absl::DataLossError("malformed pax record");
    }
    const std::string record = records.substr(space + 1, length - (space - pos) - 2);
    // "key=value" with a non-empty key, as Python's tarfile requires.
    const size_t equals = record.find('=');
    if (equals == std::string::npos || equals == 0)
      return absl::DataLossError("malformed pax record");
    const std::string key = record.substr(0, equals), value = record.substr(equals + 1);
    uint64_t number = 0;
    if (key == "path") out.path = value;
    if (key == "size") {
      if (!absl::SimpleAtoi(value, &number)) return absl::DataLossError("bad pax size record");
      out.size = number;
    }
    pos += length;
  }
  return out;
}

// Extended headers (pax, GNU long names) are read into memory; real ones are
// a few hundred bytes, so anything this large is damage, not a name.
constexpr uint64_t kMaxExtendedHeader = 1 << 20;

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

absl::Status ScanTar(const std::string& path,
                     const std::function<absl::Status(const TarEntry&)>& visit) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open shard ", path));
  struct stat st;
  if (fstat(fileno(file.get()), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  uint64_t offset = 0;
  std::string long_name;
  std::optional<uint64_t> pax_size;
  auto corrupt = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat(path, ": ", why, " at byte ", offset));
  };
  // Reads an extended header's data (already checked to lie inside the file).
  auto read_extended = [&](uint64_t size) -> absl::StatusOr<std::string> {
    if (size > kMaxExtendedHeader) return corrupt("oversized extended header");
    std::string data(size, '\0');
    if (std::fread(data.data(), 1, size, file.get()) != size) return corrupt("truncated header");
    return data;
  };
  while (true) {
    if (offset >= file_size) return absl::OkStatus();  // no end-of-archive blocks: tarfile's rule
    if (fseeko(file.get(), static_cast<off_t>(offset), SEEK_SET) != 0)
      return corrupt("seek failed");
    Header h;
    if (std::fread(&h, 1, kBlock, file.get()) != kBlock) return corrupt("truncated header");
    if (h.name[0] == '\0') {
      static const Header zero{};
      if (std::memcmp(&h, &zero, kBlock) == 0) return absl::OkStatus();
    }
    auto stored = ParseNumber(h.chksum, 8);
    if (!stored.ok() || *stored != Checksum(h)) return corrupt("header checksum mismatch");
    auto header_size = ParseNumber(h.size, 12);
    if (!header_size.ok()) return corrupt("bad size field");
    const bool regular = h.typeflag == '0' || h.typeflag == '\0' || h.typeflag == '7';
    const uint64_t size = regular && pax_size ? *pax_size : *header_size;
    const uint64_t data_offset = offset + kBlock;
    // Compared without forming data_offset + size, which a lying header could overflow.
    if (size > file_size - std::min(file_size, data_offset)) {
      return corrupt(absl::StrCat("member claims ", size, " bytes, past the end of the file"));
    }
    const uint64_t padded = size + (kBlock - size % kBlock) % kBlock;
    const uint64_t next = data_offset + padded;
    if (h.typeflag == 'L') {  // GNU long name for the next member
      ASSIGN_OR_RETURN(std::string name, read_extended(size));
      long_name = CString(name.data(), name.size());
    } else if (h.typeflag == 'x') {  // pax extended header for the next member
      ASSIGN_OR_RETURN(std::string records, read_extended(size));
      auto pax = ParsePax(records);
      if (!pax.ok()) return corrupt(std::string(pax.status().message()));
      if (!pax->path.empty()) long_name = pax->path;
      pax_size = pax->size;
    } else if (!regular) {  // dirs, links, global pax: skipped
      long_name.clear();
      pax_size.reset();
    } else {
      TarEntry entry;
      entry.offset = data_offset;
      entry.size = size;
      if (!long_name.empty()) {
        entry.name = std::move(long_name);
        long_name.clear();
      } else {
        const std::string prefix = CString(h.prefix, sizeof(h.prefix));
        const std::string name = CString(h.name, sizeof(h.name));
        entry.name = prefix.empty() ? name : prefix + "/" + name;
      }
      pax_size.reset();
      RETURN_IF_ERROR(visit(entry));
    }
    offset = next;
  }
}

absl::Status ReadTar(const std::string& path,
                     const std::function<absl::Status(const TarMember&)>& visit) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open shard ", path));
  return ScanTar(path, [&](const TarEntry& entry) -> absl::Status {
    TarMember member;
    member.name = entry.name;
    member.offset = static_cast<int64_t>(entry.offset);
    member.content.resize(entry.size);  // ScanTar checked it against the file size
    if (fseeko(file.get(), static_cast<off_t>(entry.offset), SEEK_SET) != 0 ||
        std::fread(member.content.data(), 1, entry.size, file.get()) != entry.size) {
      return absl::DataLossError(
          absl::StrCat(path, ": cannot read member ", entry.name, " at byte ", entry.offset));
    }
    return visit(member);
  });
}

}  // namespace clipscale
