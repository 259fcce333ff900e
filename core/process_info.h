// Who this process is, for messages and for the checks between ranks: its
// build (ranks of one job must all run the same one: a host with an older
// install computes different numbers) and its host name.
#pragma once

#include <string>

namespace clipscale {

// "clipscale <version> exe <crc32c of /proc/self/exe>", computed once.
const std::string& BuildStamp();

// gethostname(), or "localhost" when it fails.
const std::string& HostName();

// The path of this executable (/proc/self/exe), or "clipscale" if unknown:
// what a launcher starts on the ranks.
std::string SelfExecutable();

// `text` as one word of a POSIX shell command line: as is when it holds only
// characters no shell treats specially, else in single quotes.
std::string ShellQuote(const std::string& text);

}  // namespace clipscale
