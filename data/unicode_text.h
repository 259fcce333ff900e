// Python's string semantics on UTF-32 text, as open_clip's tokenizer sees them:
// UTF-8 decoding with replacement, str.isspace/split, str.lower and NFC.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "data/tokenizer_tables.h"

namespace clipscale::text {

// Decodes like Python's bytes.decode("utf-8", errors="replace"): every maximal
// invalid subsequence (a bad lead byte, or a valid but cut-short prefix of a
// sequence) becomes one U+FFFD, so no input makes the tokenizer fail.
std::u32string DecodeUtf8(std::string_view bytes);
std::string EncodeUtf8(std::u32string_view text);
void AppendUtf8(char32_t cp, std::string* out);

// Whether cp lies in one of the sorted, disjoint ranges.
bool InRanges(const tables::CodepointRange* ranges, size_t size, char32_t cp);

// str.isspace().
bool IsPythonSpace(char32_t cp);

// " ".join(text.split()): whitespace runs become one space, ends are trimmed.
std::u32string CollapseWhitespace(std::u32string_view text);

// str.lower(): full lowercase mapping (U+0130 becomes "i\u0307") and the final
// sigma rule, which picks ς or σ for Σ from the surrounding characters.
std::u32string PythonLower(std::u32string_view text);

// unicodedata.normalize("NFC", text), via utf8proc.
std::u32string NormalizeNfc(std::u32string_view text);

}  // namespace clipscale::text
