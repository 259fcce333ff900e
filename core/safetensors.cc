#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/file_util.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace clipscale {
namespace {

// The reference implementation refuses headers above 100 MB; so do we, before
// allocating anything a hostile length asks for.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
  // Position in the reference implementation's Dtype enum, which is ordered by
  // alignment; writers store larger ranks first so every tensor stays aligned.
  int rank;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1, 0}, {DType::kU8, "U8", 1, 1},    {DType::kI8, "I8", 1, 2},
    {DType::kI16, "I16", 2, 5},   {DType::kF16, "F16", 2, 7},  {DType::kBF16, "BF16", 2, 8},
    {DType::kI32, "I32", 4, 9},   {DType::kF32, "F32", 4, 11}, {DType::kF64, "F64", 8, 12},
    {DType::kI64, "I64", 8, 13},
};

const DTypeInfo& Info(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  return kDTypes[0];  // unreachable: every enumerator is listed
}

std::string ErrnoText() { return std::strerror(errno); }

// Byte size with overflow checks; false on overflow. The element count must fit
// int64 at every step (NumElements, torch's numel), also when a later 0 makes
// the total 0.
bool ByteSize(const std::vector<int64_t>& shape, DType dtype, uint64_t* nbytes) {
  int64_t elements = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(elements, dim, &elements)) return false;
  }
  return !__builtin_mul_overflow(static_cast<uint64_t>(elements), Info(dtype).size, nbytes);
}

}  // namespace

const char* DTypeName(DType dtype) { return Info(dtype).name; }
size_t DTypeSize(DType dtype) { return Info(dtype).size; }

absl::StatusOr<DType> ParseDType(const std::string& name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype '", name, "'"));
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

// ---------------------------------------------------------------- reading

struct SafetensorsReader::Mapping {
  void* base = MAP_FAILED;
  size_t size = 0;
  ~Mapping() {
    if (base != MAP_FAILED) munmap(base, size);
  }
};

namespace {

absl::Status ParseError(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid safetensors file: ", what));
}

absl::Status ParseMetadata(const nlohmann::json& value, const std::string& path,
                           std::map<std::string, std::string>* metadata) {
  if (!value.is_object()) return ParseError(path, "__metadata__ is not an object");
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      return ParseError(path, absl::StrCat("__metadata__ value '", key, "' is not a string"));
    }
    (*metadata)[key] = item.get<std::string>();
  }
  return absl::OkStatus();
}

struct Entry {
  TensorRecord record;
  uint64_t begin = 0, end = 0;
};

absl::Status ParseEntry(const std::string& name, const nlohmann::json& info,
                        const std::string& path, Entry* entry) {
  auto bad = [&](const std::string& what) {
    return ParseError(path, absl::StrCat("tensor '", name, "': ", what));
  };
  if (!info.is_object()) return bad("entry is not an object");
  const auto dtype = info.find("dtype");
  const auto shape = info.find("shape");
  const auto offsets = info.find("data_offsets");
  if (dtype == info.end() || !dtype->is_string()) return bad("missing string 'dtype'");
  if (shape == info.end() || !shape->is_array()) return bad("missing list 'shape'");
  if (offsets == info.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return bad("'data_offsets' is not two non-negative integers");
  }
  absl::StatusOr<DType> parsed = ParseDType(dtype->get<std::string>());
  if (!parsed.ok()) return bad(std::string(parsed.status().message()));
  entry->record.name = name;
  entry->record.dtype = *parsed;
  for (const nlohmann::json& dim : *shape) {
    if (!dim.is_number_unsigned() || dim.get<uint64_t>() > (uint64_t{1} << 62)) {
      return bad("shape entries must be non-negative integers");
    }
    entry->record.shape.push_back(dim.get<int64_t>());
  }
  entry->begin = (*offsets)[0].get<uint64_t>();
  entry->end = (*offsets)[1].get<uint64_t>();
  uint64_t nbytes = 0;
  if (!ByteSize(entry->record.shape, entry->record.dtype, &nbytes)) return bad("shape overflows");
  if (entry->end < entry->begin || entry->end - entry->begin != nbytes) {
    return bad(absl::StrCat("data_offsets [", entry->begin, ", ", entry->end, ") hold ",
                            entry->end - entry->begin, " bytes but dtype and shape need ", nbytes));
  }
  entry->record.nbytes = nbytes;
  return absl::OkStatus();
}

// The tensors must tile the byte buffer exactly: sorted by offset, each starts
// where the previous ended (no overlap, no hole) and the last ends at the file's end.
absl::Status CheckTiling(std::vector<Entry>& entries, uint64_t buffer_size,
                         const std::string& path) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  uint64_t expected = 0;
  for (const Entry& entry : entries) {
    if (entry.end > buffer_size) {
      return ParseError(
          path, absl::StrCat("tensor '", entry.record.name, "': data_offsets end ", entry.end,
                             " is past the data (", buffer_size, " bytes)"));
    }
    if (entry.begin != expected) {
      return ParseError(path, absl::StrCat("tensor '", entry.record.name, "': data starts at ",
                                           entry.begin, ", expected ", expected,
                                           entry.begin < expected ? " (overlap)" : " (hole)"));
    }
    expected = entry.end;
  }
  if (expected != buffer_size) {
    return ParseError(
        path, absl::StrCat("tensors cover ", expected, " of the ", buffer_size, " data bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafetensorsReader> SafetensorsReader::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", ErrnoText()));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": cannot stat: ", ErrnoText()));
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<size_t>(st.st_size);
  if (mapping->size >= 8) {
    mapping->base = mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  const int map_errno = errno;
  ::close(fd);
  if (mapping->size < 8) return ParseError(path, "shorter than the 8-byte header length");
  if (mapping->base == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(map_errno)));
  }
  const uint8_t* bytes = static_cast<const uint8_t*>(mapping->base);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  if (header_size > kMaxHeaderSize || header_size > mapping->size - 8) {
    return ParseError(path, absl::StrCat("header length ", header_size, " exceeds the file (",
                                         mapping->size, " bytes)"));
  }
  const nlohmann::json header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_size,
                                                      /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return ParseError(path, "header is not JSON");
  if (!header.is_object()) return ParseError(path, "header is not a JSON object");

  SafetensorsReader reader;
  reader.path_ = path;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      RETURN_IF_ERROR(ParseMetadata(info, path, &reader.metadata_));
      continue;
    }
    Entry entry;
    RETURN_IF_ERROR(ParseEntry(name, info, path, &entry));
    entries.push_back(std::move(entry));
  }
  const uint64_t data_start = 8 + header_size;
  RETURN_IF_ERROR(CheckTiling(entries, mapping->size - data_start, path));
  for (Entry& entry : entries) {
    entry.record.data = bytes + data_start + entry.begin;
    reader.tensors_.push_back(std::move(entry.record));
  }
  std::sort(reader.tensors_.begin(), reader.tensors_.end(),
            [](const TensorRecord& a, const TensorRecord& b) { return a.name < b.name; });
  reader.mapping_ = std::move(mapping);
  return reader;
}

const TensorRecord* SafetensorsReader::Find(const std::string& name) const {
  auto it = std::lower_bound(
      tensors_.begin(), tensors_.end(), name,
      [](const TensorRecord& record, const std::string& key) { return record.name < key; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

// ---------------------------------------------------------------- writing

namespace {

// Compact JSON in the reference writer's layout: "__metadata__" first, then the
// tensors in storage order, each {"dtype","shape","data_offsets"}, padded with
// spaces to a multiple of 8 so the data starts 8-byte aligned.
std::string HeaderJson(const std::vector<const TensorRecord*>& order,
                       const std::map<std::string, std::string>& metadata) {
  std::string out = "{";
  if (!metadata.empty()) out += "\"__metadata__\":" + nlohmann::json(metadata).dump();
  uint64_t offset = 0;
  for (const TensorRecord* record : order) {
    if (out.size() > 1) out += ",";
    out += nlohmann::json(record->name).dump();
    out += absl::StrCat(":{\"dtype\":\"", DTypeName(record->dtype), "\",\"shape\":[",
                        absl::StrJoin(record->shape, ","), "],\"data_offsets\":[", offset, ",",
                        offset + record->nbytes, "]}");
    offset += record->nbytes;
  }
  out += "}";
  out.append((8 - out.size() % 8) % 8, ' ');
  return out;
}

absl::Status CheckRecords(const std::vector<TensorRecord>& tensors, const std::string& path) {
  std::set<std::string> names;
  for (const TensorRecord& record : tensors) {
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": cannot write tensor '", record.name, "': ", what));
    };
    if (record.name == "__metadata__") return bad("the name is reserved");
    if (!names.insert(record.name).second) return bad("duplicate name");
    uint64_t nbytes = 0;
    if (!ByteSize(record.shape, record.dtype, &nbytes) || nbytes != record.nbytes) {
      return bad(absl::StrCat(record.nbytes, " bytes do not match dtype ", DTypeName(record.dtype),
                              " and shape [", absl::StrJoin(record.shape, ","), "]"));
    }
    if (record.data == nullptr && record.nbytes > 0) return bad("no data");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorRecord>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  RETURN_IF_ERROR(CheckRecords(tensors, path));
  // Larger alignments first, then by name, exactly as the reference writer
  // orders them: each tensor's data is then aligned to its element size.
  std::vector<const TensorRecord*> order;
  for (const TensorRecord& record : tensors) order.push_back(&record);
  std::sort(order.begin(), order.end(), [](const TensorRecord* a, const TensorRecord* b) {
    const int ra = Info(a->dtype).rank, rb = Info(b->dtype).rank;
    return ra != rb ? ra > rb : a->name < b->name;
  });
  std::string header;
  try {
    header = HeaderJson(order, metadata);
  } catch (const nlohmann::json::exception& e) {  // names or metadata that are not UTF-8
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot write header: ", e.what()));
  }
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  std::vector<ByteSpan> pieces = {{length, sizeof(length)}, {header.data(), header.size()}};
  for (const TensorRecord* record : order) pieces.push_back({record->data, record->nbytes});
  return WriteFileAtomically(path, pieces);
}

}  // namespace clipscale
