#include "data/unicode_text.h"

#include <utf8proc.h>

#include <algorithm>
#include <vector>

#include "core/status.h"

namespace clipscale::text {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

// Length of the UTF-8 sequence a lead byte starts, 0 for bytes that cannot lead.
int SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// The range the second byte must lie in; the strict bounds after E0, ED, F0 and
// F4 reject overlong forms, surrogates and code points above U+10FFFF.
bool SecondByteOk(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

bool IsCaseIgnorable(char32_t cp) {
  return InRanges(tables::kCaseIgnorable, tables::kCaseIgnorableSize, cp);
}
bool IsCased(char32_t cp) { return InRanges(tables::kCased, tables::kCasedSize, cp); }

// CPython's handle_capital_sigma: Σ is final when a cased letter precedes it and
// none follows, skipping case-ignorable characters both ways.
char32_t LowerSigma(std::u32string_view text, size_t i) {
  size_t j = i;
  while (j > 0 && IsCaseIgnorable(text[j - 1])) --j;
  if (j == 0 || !IsCased(text[j - 1])) return 0x3C3;
  size_t k = i + 1;
  while (k < text.size() && IsCaseIgnorable(text[k])) ++k;
  return (k == text.size() || !IsCased(text[k])) ? 0x3C2 : 0x3C3;
}

bool IsPythonUnassigned(char32_t cp) {
  return InRanges(tables::kPythonUnassigned, tables::kPythonUnassignedSize, cp);
}

// NFC of text that holds only characters Python's unicodedata knows.
std::u32string NormalizeNfcRun(std::u32string_view text) {
  if (text.empty()) return {};
  std::string utf8 = EncodeUtf8(text);
  const auto options = static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(utf8.data());
  std::vector<utf8proc_int32_t> buffer(text.size() + 8);
  utf8proc_ssize_t n;
  while (true) {
    n = utf8proc_decompose(bytes, static_cast<utf8proc_ssize_t>(utf8.size()), buffer.data(),
                           static_cast<utf8proc_ssize_t>(buffer.size()), options);
    CS_CHECK_MSG(n >= 0, "utf8proc_decompose: ", utf8proc_errmsg(n));
    if (static_cast<size_t>(n) <= buffer.size()) break;
    buffer.resize(static_cast<size_t>(n));
  }
  n = utf8proc_normalize_utf32(buffer.data(), n, options);
  CS_CHECK_MSG(n >= 0, "utf8proc_normalize_utf32: ", utf8proc_errmsg(n));
  return std::u32string(buffer.begin(), buffer.begin() + n);
}

}  // namespace

std::u32string DecodeUtf8(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    auto lead = static_cast<unsigned char>(bytes[i]);
    int length = SequenceLength(lead);
    if (length == 1) {
      out.push_back(lead);
      ++i;
      continue;
    }
    char32_t cp = lead & (0x7F >> length);
    int taken = 1;
    while (length > 1 && taken < length && i + taken < bytes.size()) {
      auto b = static_cast<unsigned char>(bytes[i + taken]);
      bool ok = taken == 1 ? SecondByteOk(lead, b) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
      cp = (cp << 6) | (b & 0x3F);
      ++taken;
    }
    out.push_back(length > 1 && taken == length ? cp : kReplacement);
    i += taken;
  }
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string EncodeUtf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) AppendUtf8(cp, &out);
  return out;
}

bool InRanges(const tables::CodepointRange* ranges, size_t size, char32_t cp) {
  const tables::CodepointRange* end = ranges + size;
  auto it = std::upper_bound(ranges, end, cp,
                             [](char32_t value, const auto& range) { return value < range.first; });
  return it != ranges && cp <= (it - 1)->last;
}

bool IsPythonSpace(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  return InRanges(tables::kPythonSpace, tables::kPythonSpaceSize, cp);
}

std::u32string CollapseWhitespace(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char32_t cp : text) {
    if (IsPythonSpace(cp)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(U' ');
    pending_space = false;
    out.push_back(cp);
  }
  return out;
}

std::u32string PythonLower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t cp = text[i];
    if (cp < 0x80) {
      out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    } else if (cp == 0x3A3) {
      out.push_back(LowerSigma(text, i));
    } else if (cp == 0x130) {
      // SpecialCasing.txt's only unconditional multi-character lowercase.
      out.push_back(U'i');
      out.push_back(0x307);
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    }
  }
  return out;
}

std::u32string NormalizeNfc(std::u32string_view text) {
  // Below U+0300 every character is its own NFC and none combines.
  if (std::all_of(text.begin(), text.end(), [](char32_t cp) { return cp < 0x300; })) {
    return std::u32string(text);
  }
  // utf8proc may know a newer Unicode than Python's unicodedata. To Python an
  // unassigned character is a starter that neither decomposes nor composes, so
  // normalising the runs between such characters on their own matches Python.
  std::u32string out;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && (text[i] < 0x300 || !IsPythonUnassigned(text[i]))) continue;
    out += NormalizeNfcRun(text.substr(start, i - start));
    if (i < text.size()) out.push_back(text[i]);
    start = i + 1;
  }
  return out;
}

}  // namespace clipscale::text
