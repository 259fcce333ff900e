// Shared by the image tests: runs tests/py/image_reference.py once per test
// binary and reads what it wrote (files, raw arrays, manifest.json).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace clipscale::testing {

struct ImageReference {
  std::string dir;
  nlohmann::json manifest;
  std::string Path(const std::string& file) const { return dir + "/" + file; }
};

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

template <class T>
std::vector<T> ReadRawArray(const std::string& path) {
  std::string bytes = ReadFileBytes(path);
  std::vector<T> values(bytes.size() / sizeof(T));
  std::copy(bytes.begin(), bytes.begin() + values.size() * sizeof(T),
            reinterpret_cast<char*>(values.data()));
  return values;
}

// Generated on first use; a failing script fails the test that asked.
inline const ImageReference& GetImageReference() {
  static const ImageReference* reference = [] {
    auto* ref = new ImageReference;
    ref->dir = MakeTempDir() + "/reference";
    absl::StatusOr<std::string> output = RunPythonScript("image_reference.py", {ref->dir});
    EXPECT_TRUE(output.ok()) << output.status();
    if (output.ok()) {
      std::ifstream in(ref->dir + "/manifest.json");
      ref->manifest = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    }
    return ref;
  }();
  return *reference;
}

}  // namespace clipscale::testing
