#include "core/npy.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/file_util.h"
#include "core/status.h"

namespace clipscale {
namespace {

int ItemSize(const std::string& descr) {
  if (descr == "<f4" || descr == "<i4") return 4;
  if (descr == "<f8" || descr == "<i8") return 8;
  if (descr == "|u1" || descr == "|b1" || descr == "|i1") return 1;
  if (descr == "<f2" || descr == "<i2") return 2;
  return 0;
}

int64_t Count(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
}

}  // namespace

absl::Status WriteNpy(const std::string& path, const NpyArray& array) {
  const int item = ItemSize(array.descr);
  if (item == 0) return absl::InvalidArgumentError(absl::StrCat("unsupported dtype ", array.descr));
  if (static_cast<int64_t>(array.bytes.size()) != Count(array.shape) * item) {
    return absl::InvalidArgumentError("npy: data size does not match the shape");
  }
  std::string shape = absl::StrJoin(array.shape, ", ");
  if (array.shape.size() == 1) shape += ",";
  std::string header = absl::StrCat("{'descr': '", array.descr,
                                    "', 'fortran_order': False, 'shape': (", shape, "), }");
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to 64 bytes.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(reinterpret_cast<const char*>(array.bytes.data()), array.bytes.size());
  return WriteFileAtomically(path, out);
}

absl::Status WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape,
                             const float* data) {
  NpyArray array{"<f4", shape, {}};
  const auto* begin = reinterpret_cast<const uint8_t*>(data);
  array.bytes.assign(begin, begin + Count(shape) * sizeof(float));
  return WriteNpy(path, array);
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  ASSIGN_OR_RETURN(std::string content, ReadFile(path));
  auto bad = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid .npy file: ", why));
  };
  if (content.size() < 10 || content.compare(0, 6, "\x93NUMPY") != 0) return bad("bad magic");
  if (content[6] != 1) return bad("only format version 1.0 is supported");
  const size_t header_len = static_cast<uint8_t>(content[8]) | (static_cast<uint8_t>(content[9]) << 8);
  if (10 + header_len > content.size()) return bad("header runs past the end");
  const std::string header = content.substr(10, header_len);
  NpyArray array;
  const size_t d = header.find("'descr': '");
  if (d == std::string::npos) return bad("no descr");
  array.descr = header.substr(d + 10, header.find('\'', d + 10) - d - 10);
  if (header.find("'fortran_order': False") == std::string::npos) return bad("Fortran order");
  const size_t s = header.find('(');
  const size_t e = header.find(')', s);
  if (s == std::string::npos || e == std::string::npos) return bad("no shape");
  std::stringstream dims(header.substr(s + 1, e - s - 1));
  std::string dim;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_not_of(' ') == std::string::npos) continue;
    array.shape.push_back(std::stoll(dim));
  }
  const int item = ItemSize(array.descr);
  if (item == 0) return bad(absl::StrCat("unsupported dtype ", array.descr));
  const size_t nbytes = Count(array.shape) * item;
  if (10 + header_len + nbytes != content.size()) return bad("data size does not match the shape");
  array.bytes.assign(content.begin() + 10 + header_len, content.end());
  return array;
}

}  // namespace clipscale
