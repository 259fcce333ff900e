#include "data/text_clean.h"

#include <algorithm>
#include <array>
#include <unordered_map>

#include "data/tokenizer_tables.h"
#include "data/unicode_text.h"

namespace clipscale::text {
namespace {

using CharMap = std::unordered_map<char32_t, std::u32string>;

const CharMap& FtfyCharMap() {
  static const CharMap* map = [] {
    auto* m = new CharMap;
    for (size_t i = 0; i < tables::kFtfyCharMapSize; ++i) {
      m->emplace(tables::kFtfyCharMap[i].key, DecodeUtf8(tables::kFtfyCharMap[i].utf8));
    }
    return m;
  }();
  return *map;
}

bool IsRemovedControl(char32_t cp) {
  return InRanges(tables::kFtfyRemovedControls, tables::kFtfyRemovedControlsSize, cp);
}

// Characters below U+0300 that some ftfy fixer may change; text made only of
// other characters below U+0300 is a fixed point of every fixer (and of NFC).
const std::array<bool, 0x300>& NeedsFixing() {
  static const auto* table = [] {
    auto* t = new std::array<bool, 0x300>{};
    for (char32_t cp = 0; cp < 0x300; ++cp) {
      (*t)[cp] = cp == '&' || cp == '\r' || cp == 0x1B || IsRemovedControl(cp) ||
                 (cp >= 0x80 && cp <= 0x9F) || FtfyCharMap().count(cp) > 0;
    }
    return t;
  }();
  return *table;
}

bool IsFixedPoint(std::u32string_view text) {
  const auto& needs = NeedsFixing();
  for (char32_t cp : text) {
    if (cp >= 0x300 || needs[cp]) return false;
  }
  return true;
}

std::u32string MapChars(std::u32string_view text) {
  const CharMap& map = FtfyCharMap();
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text) {
    auto it = cp < 0x80 ? map.end() : map.find(cp);
    if (it == map.end()) {
      out.push_back(cp);
    } else {
      out += it->second;
    }
  }
  return out;
}

// fix_line_breaks: CRLF, CR, U+2028, U+2029 and NEL all become "\n".
std::u32string FixLineBreaks(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t cp = text[i];
    if (cp == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    bool is_break = cp == '\r' || cp == 0x2028 || cp == 0x2029 || cp == 0x85;
    out.push_back(is_break ? U'\n' : cp);
  }
  return out;
}

// remove_terminal_escapes: drops matches of "\033\[((?:\d|;)*)([a-zA-Z])".
std::u32string RemoveTerminalEscapes(std::u32string_view text) {
  if (text.find(U'\x1b') == std::u32string_view::npos) return std::u32string(text);
  std::u32string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == 0x1B && i + 1 < text.size() && text[i + 1] == '[') {
      size_t k = i + 2;
      while (k < text.size() &&
             (text[k] == ';' ||
              InRanges(tables::kPythonReDigits, tables::kPythonReDigitsSize, text[k]))) {
        ++k;
      }
      if (k < text.size() && ((text[k] | 0x20) >= 'a' && (text[k] | 0x20) <= 'z')) {
        i = k;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

std::u32string RemoveControls(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text) {
    if (!IsRemovedControl(cp)) out.push_back(cp);
  }
  return out;
}

// ftfy's fix_and_explain loop for one segment, without fix_encoding.
std::u32string FixSegment(std::u32string text, bool unescape_html) {
  while (true) {
    std::u32string fixed = unescape_html ? FtfyUnescapeHtml(text) : text;
    fixed = MapChars(fixed);
    fixed = FixLineBreaks(fixed);
    fixed = RemoveTerminalEscapes(fixed);
    fixed = RemoveControls(fixed);
    fixed = NormalizeNfc(fixed);
    if (fixed == text) return fixed;
    text = std::move(fixed);
  }
}

}  // namespace

std::u32string FixTextLite(std::u32string_view text) {
  if (IsFixedPoint(text)) return std::u32string(text);
  // fix_text works line by line (segments keep their "\n", and are cut every
  // million characters); once a segment contains '<' the text is taken for HTML
  // and no later segment is unescaped either.
  constexpr size_t kMaxDecodeLength = 1000000;
  std::u32string out;
  bool unescape_html = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(U'\n', pos);
    end = end == std::u32string_view::npos ? text.size() : end + 1;
    if (end - pos > kMaxDecodeLength) end = pos + kMaxDecodeLength;
    std::u32string_view segment = text.substr(pos, end - pos);
    if (unescape_html && segment.find(U'<') != std::u32string_view::npos) unescape_html = false;
    out += FixSegment(std::u32string(segment), unescape_html);
    pos = end;
  }
  return out;
}

std::string CleanCaption(std::string_view utf8) {
  // Most captions are printable ASCII; without '&' and control characters every
  // ftfy fixer and html.unescape leave them alone, so only spacing and case remain.
  auto plain = [](char c) {
    return (c >= ' ' && c <= '~' && c != '&') || c == '\t' || c == '\n' || c == '\f';
  };
  if (std::all_of(utf8.begin(), utf8.end(), plain)) {
    std::string out;
    out.reserve(utf8.size());
    bool pending_space = false;
    for (char c : utf8) {
      if (c == ' ' || c == '\t' || c == '\n' || c == '\f') {
        pending_space = !out.empty();
        continue;
      }
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    return out;
  }
  std::u32string text = FixTextLite(DecodeUtf8(utf8));
  text = HtmlUnescape(HtmlUnescape(text));
  return EncodeUtf8(PythonLower(CollapseWhitespace(text)));
}

}  // namespace clipscale::text
