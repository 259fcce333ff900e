// The main of every clipscale_test binary: GoogleTest's, plus two guards so
// that ctest reports what really happened.
//
// - Skips show as skips. When no selected test failed and at least one
//   skipped, the binary exits with kSkipExitCode, which ctest's
//   SKIP_RETURN_CODE turns into "Skipped". Any failure exits 1 as usual, so a
//   skip can never hide a failure. The skipped tests and their reasons are
//   printed and, where CLIPSCALE_SKIP_FILE names a file, written there
//   (scripts/test.sh lists them after ctest).
// - A --gtest_filter that selects no test fails instead of passing empty,
//   so a renamed test cannot silently drop out of its ctest entry.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

constexpr int kSkipExitCode = 77;  // tests/CMakeLists.txt sets SKIP_RETURN_CODE to this

class SkipCollector : public testing::EmptyTestEventListener {
 public:
  void OnTestStart(const testing::TestInfo&) override { reason_.clear(); }
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.skipped()) return;
    // GTEST_SKIP() << "why" arrives as "Skipped\nwhy".
    std::string message = result.message();
    if (message.rfind("Skipped\n", 0) == 0) message.erase(0, 8);
    for (char& c : message) {
      if (c == '\n') c = ' ';
    }
    reason_ = message.empty() ? "(no reason given)" : message;
  }
  void OnTestEnd(const testing::TestInfo& info) override {
    if (!info.result()->Skipped()) return;
    lines_.push_back(std::string(info.test_suite_name()) + "." + info.name() + ": " +
                     (reason_.empty() ? "(no reason given)" : reason_));
  }
  const std::vector<std::string>& lines() const { return lines_; }

 private:
  std::string reason_;
  std::vector<std::string> lines_;
};

// One file per rank under mpiexec, so ranks do not write over each other.
std::string SkipFile() {
  const char* file = std::getenv("CLIPSCALE_SKIP_FILE");
  if (file == nullptr || *file == '\0') return "";
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (rank == nullptr) rank = std::getenv("PMI_RANK");
  return std::string(file) + (rank ? std::string(".rank") + rank : std::string());
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  auto* collector = new SkipCollector;  // the listener list owns it
  testing::UnitTest& unit = *testing::UnitTest::GetInstance();
  unit.listeners().Append(collector);
  const std::string skip_file = SkipFile();
  if (!skip_file.empty()) std::remove(skip_file.c_str());  // no stale reasons from earlier runs

  const int code = RUN_ALL_TESTS();
  if (GTEST_FLAG_GET(list_tests)) return code;
  if (code == 0 && unit.test_to_run_count() == 0 && GTEST_FLAG_GET(filter) != "*") {
    std::fprintf(stderr, "error: --gtest_filter=%s selects no test\n",
                 GTEST_FLAG_GET(filter).c_str());
    return 1;
  }
  if (code != 0 || collector->lines().empty()) return code;
  std::ofstream out;
  if (!skip_file.empty()) {
    std::error_code error;
    std::filesystem::create_directories(std::filesystem::path(skip_file).parent_path(), error);
    out.open(skip_file);
  }
  std::printf("skipped (%zu):\n", collector->lines().size());
  for (const std::string& line : collector->lines()) {
    std::printf("  %s\n", line.c_str());
    if (out) out << line << "\n";
  }
  std::fflush(stdout);
  return kSkipExitCode;
}
