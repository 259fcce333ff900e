// Minimal leveled logging to stderr; rank 0 alone prints INFO in multi-rank runs.
#pragma once

#include <string>

#include "absl/strings/str_cat.h"

namespace clipscale {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void LogMessage(LogLevel level, const std::string& message);

template <class... Args>
void LogInfo(const Args&... args) { LogMessage(LogLevel::kInfo, absl::StrCat(args...)); }
template <class... Args>
void LogWarning(const Args&... args) { LogMessage(LogLevel::kWarning, absl::StrCat(args...)); }
template <class... Args>
void LogError(const Args&... args) { LogMessage(LogLevel::kError, absl::StrCat(args...)); }

}  // namespace clipscale
