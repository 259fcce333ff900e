// html.unescape and ftfy's unescape_html, following CPython's html/__init__.py and
// ftfy/fixes.py step by step (their regexes are matched by hand below).
#include <string>
#include <unordered_map>

#include "data/text_clean.h"
#include "data/tokenizer_tables.h"
#include "data/unicode_text.h"

namespace clipscale::text {
namespace {

using EntityMap = std::unordered_map<std::string, std::u32string>;

EntityMap BuildMap(const tables::StringEntry* entries, size_t size) {
  EntityMap map;
  map.reserve(size);
  for (size_t i = 0; i < size; ++i) map.emplace(entries[i].key, DecodeUtf8(entries[i].utf8));
  return map;
}

const EntityMap& Html5() {
  static const EntityMap* map =
      new EntityMap(BuildMap(tables::kHtml5Entities, tables::kHtml5EntitiesSize));
  return *map;
}

const EntityMap& FtfyExtra() {
  static const EntityMap* map =
      new EntityMap(BuildMap(tables::kFtfyExtraEntities, tables::kFtfyExtraEntitiesSize));
  return *map;
}

bool IsDigit(char32_t c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char32_t c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int HexValue(char32_t c) { return IsDigit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }
bool IsAsciiAlnum(char32_t c) { return IsDigit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

// _replace_charref for a numeric reference; digits saturate above U+10FFFF.
std::u32string NumericCharref(std::u32string_view digits, int base) {
  uint32_t num = 0;
  for (char32_t c : digits) {
    if (num <= 0x10FFFF) num = num * base + HexValue(c);
  }
  for (size_t i = 0; i < tables::kHtmlInvalidCharrefsSize; ++i) {
    if (tables::kHtmlInvalidCharrefs[i].key == num) {
      return DecodeUtf8(tables::kHtmlInvalidCharrefs[i].utf8);
    }
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return U"\uFFFD";
  if (InRanges(tables::kHtmlInvalidCodepoints, tables::kHtmlInvalidCodepointsSize, num)) return U"";
  return std::u32string(1, static_cast<char32_t>(num));
}

// _replace_charref for a name: exact, else the longest known prefix (of at least
// two characters), else the text unchanged.
std::u32string NamedCharref(std::u32string_view name) {
  const EntityMap& html5 = Html5();
  if (auto it = html5.find(EncodeUtf8(name)); it != html5.end()) return it->second;
  for (size_t x = name.size() - 1; x >= 2 && x < name.size(); --x) {
    if (auto it = html5.find(EncodeUtf8(name.substr(0, x))); it != html5.end()) {
      return it->second + std::u32string(name.substr(x));
    }
  }
  return U"&" + std::u32string(name);
}

// Matches html's _charref regex at text[at] == '&':
//   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
// Returns the match length (0 for none) and appends its replacement to out.
size_t ReplaceCharref(std::u32string_view text, size_t at, std::u32string* out) {
  size_t n = text.size(), j = at + 1;
  auto optional_semicolon = [&](size_t k) { return k < n && text[k] == ';' ? k + 1 : k; };
  if (j < n && text[j] == '#') {
    size_t k = j + 1;
    while (k < n && IsDigit(text[k])) ++k;
    if (k > j + 1) {
      *out += NumericCharref(text.substr(j + 1, k - j - 1), 10);
      return optional_semicolon(k) - at;
    }
    if (k < n && (text[k] == 'x' || text[k] == 'X')) {
      size_t h = k + 1;
      while (h < n && IsHexDigit(text[h])) ++h;
      if (h > k + 1) {
        *out += NumericCharref(text.substr(k + 1, h - k - 1), 16);
        return optional_semicolon(h) - at;
      }
    }
    return 0;
  }
  size_t k = j;
  auto allowed = [](char32_t c) {
    return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' &&
           c != ';';
  };
  while (k < n && k - j < 32 && allowed(text[k])) ++k;
  if (k == j) return 0;
  k = optional_semicolon(k);
  *out += NamedCharref(text.substr(j, k - j));
  return k - at;
}

// Length of ftfy's HTML_ENTITY_RE match `&#?[0-9A-Za-z]{1,24};` at text[at], or 0.
size_t FtfyEntityLength(std::u32string_view text, size_t at) {
  size_t start = at + 1;
  if (start < text.size() && text[start] == '#') ++start;
  size_t k = start;
  while (k < text.size() && IsAsciiAlnum(text[k])) ++k;
  size_t run = k - start;
  if (run < 1 || run > 24 || k >= text.size() || text[k] != ';') return 0;
  return k + 1 - at;
}

// ftfy's _unescape_fixup for one matched entity.
std::u32string FtfyEntity(std::u32string_view entity) {
  std::string key = EncodeUtf8(entity.substr(1));
  if (auto it = FtfyExtra().find(key); it != FtfyExtra().end()) return it->second;
  if (auto it = Html5().find(key); it != Html5().end()) return it->second;
  if (entity.size() > 1 && entity[1] == '#') {
    std::u32string unescaped = HtmlUnescape(entity);
    // A reference html.unescape only partly decoded keeps its ';': leave it.
    if (unescaped.find(U';') == std::u32string::npos) return unescaped;
  }
  return std::u32string(entity);
}

}  // namespace

std::u32string HtmlUnescape(std::u32string_view text) {
  if (text.find(U'&') == std::u32string_view::npos) return std::u32string(text);
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t length = text[i] == '&' ? ReplaceCharref(text, i, &out) : 0;
    if (length == 0) out.push_back(text[i++]);
    i += length;
  }
  return out;
}

std::u32string FtfyUnescapeHtml(std::u32string_view text) {
  if (text.find(U'&') == std::u32string_view::npos) return std::u32string(text);
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t length = text[i] == '&' ? FtfyEntityLength(text, i) : 0;
    if (length == 0) {
      out.push_back(text[i++]);
      continue;
    }
    out += FtfyEntity(text.substr(i, length));
    i += length;
  }
  return out;
}

}  // namespace clipscale::text
