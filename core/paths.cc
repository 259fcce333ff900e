#include "core/paths.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace clipscale {

std::vector<std::string> DataSearchPath() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("CLIPSCALE_DATA_DIR")) dirs.push_back(env);
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back((exe.parent_path().parent_path() / "share" / "clipscale").string());
  dirs.push_back(CLIPSCALE_BUILD_DATA_DIR);
  dirs.push_back(CLIPSCALE_INSTALL_DATA_DIR);
  return dirs;
}

absl::StatusOr<std::string> FindDataFile(std::string_view relative) {
  std::vector<std::string> tried;
  for (const std::string& dir : DataSearchPath()) {
    std::filesystem::path candidate = std::filesystem::path(dir) / std::string(relative);
    std::error_code error;  // an unreadable folder is one more place it is not
    if (std::filesystem::exists(candidate, error)) return candidate.string();
    tried.push_back(candidate.string());
  }
  return absl::NotFoundError(absl::StrCat("cannot find ", std::string(relative), "; tried ",
                                          absl::StrJoin(tried, ", "),
                                          " (run scripts/setup.sh, or set CLIPSCALE_DATA_DIR)"));
}

}  // namespace clipscale
