#include "core/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

using ::testing::HasSubstr;

const DType kAllDTypes[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                            DType::kI32, DType::kI16, DType::kI8,  DType::kU8,   DType::kBool};

struct Spec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

// The byte pattern tests/py/st_bytes.py fills in: byte k of the i-th tensor.
std::vector<uint8_t> Pattern(size_t index, const Spec& spec) {
  std::vector<uint8_t> bytes(NumElements(spec.shape) * DTypeSize(spec.dtype));
  const int modulus = spec.dtype == DType::kBool ? 2 : 256;
  for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = (31 * k + 7 * index + 3) % modulus;
  return bytes;
}

// Tensors of every dtype, a scalar and an empty one, in no particular order.
std::vector<Spec> MixedSpecs() {
  std::vector<Spec> specs;
  int i = 0;
  for (DType dtype : kAllDTypes) {
    specs.push_back({std::string("t") + DTypeName(dtype), dtype, {2, 3 + i++}});
  }
  specs.push_back({"scalar", DType::kF32, {}});
  specs.push_back({"empty", DType::kI64, {0, 4}});
  specs.push_back({"a.nested.name", DType::kBF16, {5}});
  return specs;
}

// Records pointing into `storage`, which must outlive them.
std::vector<TensorRecord> MakeRecords(const std::vector<Spec>& specs,
                                      std::vector<std::vector<uint8_t>>* storage) {
  storage->clear();
  for (size_t i = 0; i < specs.size(); ++i) storage->push_back(Pattern(i, specs[i]));
  std::vector<TensorRecord> records;
  for (size_t i = 0; i < specs.size(); ++i) {
    records.push_back({specs[i].name, specs[i].dtype, specs[i].shape, (*storage)[i].data(),
                       (*storage)[i].size()});
  }
  return records;
}

std::string SpecJson(const std::vector<Spec>& specs,
                     const std::map<std::string, std::string>& metadata) {
  nlohmann::json json;
  json["metadata"] = metadata;
  json["tensors"] = nlohmann::json::array();
  for (const Spec& spec : specs) {
    json["tensors"].push_back(
        {{"name", spec.name}, {"dtype", DTypeName(spec.dtype)}, {"shape", spec.shape}});
  }
  return json.dump();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void ExpectMatchesSpecs(const SafetensorsReader& reader, const std::vector<Spec>& specs) {
  ASSERT_EQ(reader.tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorRecord* record = reader.Find(specs[i].name);
    ASSERT_NE(record, nullptr) << specs[i].name;
    EXPECT_EQ(record->dtype, specs[i].dtype) << specs[i].name;
    EXPECT_EQ(record->shape, specs[i].shape) << specs[i].name;
    const std::vector<uint8_t> want = Pattern(i, specs[i]);
    ASSERT_EQ(record->nbytes, want.size()) << specs[i].name;
    // memcmp with an empty vector's null data() is undefined, even for 0 bytes.
    if (!want.empty()) {
      EXPECT_EQ(std::memcmp(record->data, want.data(), want.size()), 0) << specs[i].name;
    }
  }
}

TEST(SafetensorsTest, RoundTripsEveryDtypeWithMetadata) {
  const std::string path = testing::MakeTempDir() + "/t.safetensors";
  const std::vector<Spec> specs = MixedSpecs();
  std::vector<std::vector<uint8_t>> storage;
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "a \"b\"\n"}};
  ASSERT_TRUE(WriteSafetensors(path, MakeRecords(specs, &storage), metadata).ok());
  // Only the result is left in the folder: no "<path>.tmp.<pid>" behind it.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << "left behind: " << entry.path();
    ++files;
  }
  EXPECT_EQ(files, 1);

  absl::StatusOr<SafetensorsReader> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ExpectMatchesSpecs(*reader, specs);
  EXPECT_EQ(reader->metadata(), metadata);
  EXPECT_EQ(reader->Find("missing"), nullptr);
  for (size_t i = 1; i < reader->tensors().size(); ++i) {
    EXPECT_LT(reader->tensors()[i - 1].name, reader->tensors()[i].name);
  }
}

TEST(SafetensorsTest, DataIsAlignedToElementSize) {
  const std::string path = testing::MakeTempDir() + "/t.safetensors";
  std::vector<std::vector<uint8_t>> storage;
  ASSERT_TRUE(WriteSafetensors(path, MakeRecords(MixedSpecs(), &storage), {{"x", "odd"}}).ok());
  const std::string bytes = ReadFile(path);
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);  // little-endian host
  EXPECT_EQ(header_size % 8, 0u);
  absl::StatusOr<SafetensorsReader> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  for (const TensorRecord& record : reader->tensors()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(record.data) % DTypeSize(record.dtype), 0u)
        << record.name;
  }
}

// One metadata entry at most: the reference writer keeps metadata in a hash map,
// so with several entries its order (and so its bytes) is unspecified.
void ExpectSameBytesAsPython(const std::map<std::string, std::string>& metadata) {
  const std::string dir = testing::MakeTempDir();
  const std::vector<Spec> specs = MixedSpecs();
  WriteFile(dir + "/spec.json", SpecJson(specs, metadata));
  std::vector<std::vector<uint8_t>> storage;
  ASSERT_TRUE(
      WriteSafetensors(dir + "/ours.safetensors", MakeRecords(specs, &storage), metadata).ok());
  // Python checks our file against the spec, then writes its own.
  absl::StatusOr<std::string> out = testing::RunPythonScript(
      "st_bytes.py", {dir + "/spec.json", dir + "/ours.safetensors", dir + "/theirs.safetensors"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("ok"));
  const std::string ours = ReadFile(dir + "/ours.safetensors");
  EXPECT_GT(ours.size(), 100u);
  EXPECT_EQ(ours, ReadFile(dir + "/theirs.safetensors"));
  absl::StatusOr<SafetensorsReader> theirs = SafetensorsReader::Open(dir + "/theirs.safetensors");
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  ExpectMatchesSpecs(*theirs, specs);
  EXPECT_EQ(theirs->metadata(), metadata);
}

TEST(SafetensorsTest, WritesTheSameBytesAsPythonAndReadsPythonFiles) {
  ExpectSameBytesAsPython({{"format", "pt"}});
}

TEST(SafetensorsTest, WritesTheSameBytesAsPythonWithoutMetadata) { ExpectSameBytesAsPython({}); }

TEST(SafetensorsTest, OverwritesAnExistingFile) {
  const std::string path = testing::MakeTempDir() + "/t.safetensors";
  std::vector<std::vector<uint8_t>> storage;
  ASSERT_TRUE(WriteSafetensors(path, MakeRecords(MixedSpecs(), &storage)).ok());
  const std::vector<Spec> small = {{"only", DType::kU8, {3}}};
  ASSERT_TRUE(WriteSafetensors(path, MakeRecords(small, &storage)).ok());
  absl::StatusOr<SafetensorsReader> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ExpectMatchesSpecs(*reader, small);
}

TEST(SafetensorsTest, RefusesBadRecords) {
  const std::string dir = testing::MakeTempDir();
  const uint8_t bytes[8] = {};
  const std::vector<std::pair<std::vector<TensorRecord>, std::string>> cases = {
      {{{"a", DType::kF32, {2}, bytes, 8}, {"a", DType::kF32, {2}, bytes, 8}}, "duplicate"},
      {{{"a", DType::kF32, {3}, bytes, 8}}, "do not match"},
      {{{"a", DType::kF32, {-2}, bytes, 8}}, "do not match"},
      {{{"__metadata__", DType::kU8, {1}, bytes, 1}}, "reserved"},
      {{{"bad\xff", DType::kU8, {1}, bytes, 1}}, "header"},
  };
  for (const auto& [records, message] : cases) {
    const absl::Status status = WriteSafetensors(dir + "/t.safetensors", records);
    EXPECT_FALSE(status.ok()) << message;
    EXPECT_THAT(std::string(status.message()), HasSubstr(message));
  }
  EXPECT_NE(access((dir + "/t.safetensors").c_str(), F_OK), 0);
  EXPECT_FALSE(WriteSafetensors(dir + "/no/such/dir/t.safetensors", {}).ok());
}

// A file with the given header text and `data_size` zero bytes after it.
std::string RawFile(const std::string& header, size_t data_size, uint64_t header_size) {
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &header_size, 8);
  return bytes + header + std::string(data_size, '\0');
}
std::string RawFile(const std::string& header, size_t data_size) {
  return RawFile(header, data_size, header.size());
}

TEST(SafetensorsTest, CorruptFilesGiveErrorsNamingFileAndTensor) {
  const std::string path = testing::MakeTempDir() + "/bad.safetensors";
  auto one = [](const std::string& info) { return "{\"w\":" + info + "}"; };
  const struct {
    std::string bytes, message;
  } cases[] = {
      {"", "shorter than"},
      {"abc", "shorter than"},
      {RawFile("{}", 0, 1000), "exceeds the file"},
      {RawFile("{}", 0, uint64_t{1} << 63), "exceeds the file"},
      {RawFile("{not json", 0), "not JSON"},
      {RawFile("[1,2]", 0), "not a JSON object"},
      {RawFile(one(R"({"dtype":"Q4","shape":[1],"data_offsets":[0,1]})"), 1), "'w'"},
      {RawFile(one(R"({"shape":[1],"data_offsets":[0,4]})"), 4), "'w': missing string 'dtype'"},
      {RawFile(one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"), 4), "'w'"},
      {RawFile(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), 4), "'w'"},
      {RawFile(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})"), 4), "'w'"},
      {RawFile(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), 4), "'w'"},
      {RawFile(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), 4),
       "'w': data_offsets end"},
      {RawFile(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"), 12),
       "cover 4 of the 12"},
      {RawFile(one(R"({"dtype":"U8","shape":[1099511627776,1099511627776],"data_offsets":[0,0]})"),
               0),
       "overflow"},
      // 0 bytes, but 2^62 * 2 elements on the way: NumElements (and torch's
      // numel) would overflow int64 (found by safetensors_fuzz under UBSan).
      {RawFile(one(R"({"dtype":"U8","shape":[4611686018427387904,2,0],"data_offsets":[0,0]})"),
               0),
       "overflow"},
      {RawFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               12),
       "overlap"},
      {RawFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("v":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
               12),
       "'v': data starts at 8, expected 4 (hole)"},
      {RawFile(R"({"__metadata__":{"k":1}})", 0), "'k' is not a string"},
  };
  for (const auto& c : cases) {
    WriteFile(path, c.bytes);
    absl::StatusOr<SafetensorsReader> reader = SafetensorsReader::Open(path);
    ASSERT_FALSE(reader.ok()) << c.message;
    EXPECT_THAT(std::string(reader.status().message()), HasSubstr(path)) << c.message;
    EXPECT_THAT(std::string(reader.status().message()), HasSubstr(c.message));
  }
  EXPECT_FALSE(SafetensorsReader::Open(path + ".missing").ok());
}

// Every truncation of a valid file is an error; every single-byte change of the
// header either fails or still describes tensors that tile the data exactly.
TEST(SafetensorsTest, TruncatedOrMangledFilesNeverReadOutOfBounds) {
  const std::string dir = testing::MakeTempDir();
  // Small, so that mangling every header byte stays quick.
  const std::vector<Spec> specs = {{"w", DType::kF32, {2, 3}}, {"b", DType::kBF16, {3}}};
  std::vector<std::vector<uint8_t>> storage;
  ASSERT_TRUE(WriteSafetensors(dir + "/good", MakeRecords(specs, &storage), {{"k", "v"}}).ok());
  const std::string good = ReadFile(dir + "/good");
  for (size_t size = 0; size < good.size(); ++size) {
    WriteFile(dir + "/cut", good.substr(0, size));
    EXPECT_FALSE(SafetensorsReader::Open(dir + "/cut").ok()) << "truncated to " << size;
  }
  uint64_t header_size = 0;
  std::memcpy(&header_size, good.data(), 8);
  for (size_t pos = 0; pos < 8 + header_size; ++pos) {
    for (char value : {'0', '9', '"', '{', ']', '\0', '\xff'}) {
      std::string bytes = good;
      bytes[pos] = value;
      WriteFile(dir + "/mangled", bytes);
      absl::StatusOr<SafetensorsReader> reader = SafetensorsReader::Open(dir + "/mangled");
      if (!reader.ok()) continue;
      uint64_t mangled_header_size = 0;
      std::memcpy(&mangled_header_size, bytes.data(), 8);
      size_t total = 0;
      for (const TensorRecord& record : reader->tensors()) total += record.nbytes;
      EXPECT_EQ(total, good.size() - 8 - mangled_header_size) << "byte " << pos;
    }
  }
}

}  // namespace
}  // namespace clipscale
