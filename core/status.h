// Error handling: absl::Status at every boundary a user's input reaches, fatal
// CHECKs (with file:line) for broken invariants.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace clipscale {

// Prints "clipscale: FATAL [rank R] file:line: message" and aborts; used by CHECK.
[[noreturn]] void FatalError(const char* file, int line, const std::string& message);

// The rank FatalError names: set by main once the launcher or MPI says which
// rank this process is, and by the communicator factory. Until then it is
// CLIPSCALE_RANK from the environment, else 0.
void SetFatalErrorRank(int rank);

// Prefixes a status message with context, keeping its code.
absl::Status Annotate(const absl::Status& status, const std::string& context);

}  // namespace clipscale

#define CLIPSCALE_CONCAT_INNER(a, b) a##b
#define CLIPSCALE_CONCAT(a, b) CLIPSCALE_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status _status = (expr);                 \
    if (!_status.ok()) return _status;               \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(CLIPSCALE_CONCAT(_status_or_, __LINE__), lhs, expr)

#define CS_CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) ::clipscale::FatalError(__FILE__, __LINE__, "CHECK failed: " #cond); \
  } while (0)

#define CS_CHECK_MSG(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond))                                                               \
      ::clipscale::FatalError(__FILE__, __LINE__,                              \
                              ::absl::StrCat("CHECK failed: " #cond ": ", __VA_ARGS__)); \
  } while (0)

#define CS_CHECK_OK(expr)                                                          \
  do {                                                                          \
    ::absl::Status _status = (expr);                                            \
    if (!_status.ok())                                                          \
      ::clipscale::FatalError(__FILE__, __LINE__, std::string(_status.message())); \
  } while (0)
