#include "core/process_info.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/crc32c.h"
#include "core/file_util.h"

namespace clipscale {

const std::string& BuildStamp() {
  static const std::string stamp = [] {
    std::string s = absl::StrCat("clipscale ", CLIPSCALE_VERSION);
    auto exe = ReadFile("/proc/self/exe");
    if (exe.ok()) absl::StrAppendFormat(&s, " exe %08x", Crc32c(*exe));
    return s;
  }();
  return stamp;
}

const std::string& HostName() {
  static const std::string name = [] {
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return std::string("localhost");
    return std::string(host);
  }();
  return name;
}

std::string SelfExecutable() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? "clipscale" : self.string();
}

std::string ShellQuote(const std::string& text) {
  if (!text.empty() && text.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_-./=:,+@%") == std::string::npos) {
    return text;
  }
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace clipscale
