// Helpers shared by the tests: temporary folders and running the venv's Python
// (open_clip, torch) to produce reference values.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale::testing {

// The project's source and build folders and the venv Python, as CMake saw them.
std::string SourceDir();
std::string BinaryDir();
std::string Python();

// A fresh, empty folder under the build tree, named after the running test
// (and, under mpirun, the world size: the same for every rank of one job).
std::string MakeTempDir();

// Runs `python tests/py/<script> args...` (quoted), returns its stdout, or an
// error with its exit status and stderr tail when it fails.
absl::StatusOr<std::string> RunPythonScript(const std::string& script,
                                            const std::vector<std::string>& args);

// Runs a shell command, returns stdout and the exit status.
struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
CommandResult RunCommand(const std::string& command);

std::string ShellQuote(const std::string& arg);

// The clipscale binary the end-to-end tests run (CLIPSCALE_TEST_BINARY, if
// set, names another build) and the mpirun prefix for `ranks` ranks on this
// machine (as root, more ranks than cores allowed), ending in a space.
std::string ClipscaleBinary();
std::string Mpirun(int ranks);

// A demo dataset written by `clipscale data synth <args>` once per test binary
// into <build>/test_tmp/<name> (not MakeTempDir: that folder is the current
// test's and is wiped by it); later calls with the same name return it.
const std::string& SharedSynthData(const std::string& name, const std::string& args);

// The small CLIP of the end-to-end job tests (one block per tower, patch
// dropout on, so the ranks' generators are part of what must resume): the
// recipe's `model` and `model_overrides` lines. 24 steps of 32 take seconds.
inline constexpr char kTinyModelYaml[] =
    "model: tiny\n"
    "model_overrides: [\"vision.layers=1\", \"text.layers=1\", \"vision.width=64\", "
    "\"vision.head_width=32\", \"text.width=64\", \"text.heads=1\", \"embed_dim=32\", "
    "\"vision.patch_dropout=0.5\"]\n";

}  // namespace clipscale::testing
