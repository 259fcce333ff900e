#include "tests/test_util.h"

#include <cstdlib>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace clipscale::testing {

std::string SourceDir() { return CLIPSCALE_SOURCE_DIR; }
std::string BinaryDir() { return CLIPSCALE_BINARY_DIR; }
std::string Python() { return CLIPSCALE_TEST_PYTHON; }

std::string MakeTempDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? absl::StrCat(info->test_suite_name(), ".", info->name()) : "misc";
  // ctest runs one binary's entries at the same time (its NP 1, 2 and 4
  // entries; image_transform_test with and without SIMD): each entry gets its
  // own folder (CLIPSCALE_TEST_ENTRY, set by tests/CMakeLists.txt), every rank
  // of one job the same; by hand, one per MPI world size.
  if (const char* entry = std::getenv("CLIPSCALE_TEST_ENTRY"); entry && *entry) {
    absl::StrAppend(&name, ".", entry);
  } else if (const char* world = std::getenv("OMPI_COMM_WORLD_SIZE"); world && *world) {
    absl::StrAppend(&name, ".np", world);
  }
  std::filesystem::path dir = std::filesystem::path(BinaryDir()) / "test_tmp" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string ClipscaleBinary() {
  const char* other = std::getenv("CLIPSCALE_TEST_BINARY");
  return other && *other ? other : BinaryDir() + "/bin/clipscale";
}

std::string Mpirun(int ranks) {
  return absl::StrCat(CLIPSCALE_TEST_MPIEXEC, " --allow-run-as-root --oversubscribe -np ", ranks,
                      " ");
}

std::string ShellQuote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

absl::StatusOr<std::string> RunPythonScript(const std::string& script,
                                            const std::vector<std::string>& args) {
  if (Python().empty()) return absl::FailedPreconditionError("no venv Python configured");
  std::string command = absl::StrCat(ShellQuote(Python()), " ",
                                     ShellQuote(SourceDir() + "/tests/py/" + script));
  for (const auto& arg : args) absl::StrAppend(&command, " ", ShellQuote(arg));
  // stderr goes to a file so stdout stays machine-readable.
  static int counter = 0;
  std::filesystem::create_directories(BinaryDir() + "/test_tmp");
  std::string err_path =
      absl::StrCat(BinaryDir(), "/test_tmp/python_stderr_", getpid(), "_", counter++, ".txt");
  FILE* pipe = popen((command + " 2>" + ShellQuote(err_path)).c_str(), "r");
  if (!pipe) return absl::InternalError("popen failed");
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  int status = pclose(pipe);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string err;
    if (FILE* f = fopen(err_path.c_str(), "r")) {
      while ((n = fread(buffer, 1, sizeof(buffer), f)) > 0) err.append(buffer, n);
      fclose(f);
    }
    if (err.size() > 4000) err = err.substr(err.size() - 4000);
    return absl::InternalError(absl::StrCat(script, " failed (status ", status, "): ", err));
  }
  std::filesystem::remove(err_path);
  return out;
}

const std::string& SharedSynthData(const std::string& name, const std::string& args) {
  static auto* made = new std::map<std::string, std::string>;
  auto it = made->find(name);
  if (it != made->end()) return it->second;
  const std::string dir = BinaryDir() + "/test_tmp/" + name;
  std::filesystem::remove_all(dir);
  const CommandResult r =
      RunCommand(ShellQuote(ClipscaleBinary()) + " data synth --out " + ShellQuote(dir) + " " + args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return made->emplace(name, dir).first->second;
}

}  // namespace clipscale::testing
