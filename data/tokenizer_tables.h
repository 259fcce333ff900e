// Unicode and HTML data behind open_clip's text cleaning, generated into
// tokenizer_tables.cc from the venv's Python (html.entities, ftfy, str.lower,
// str.isspace, the `regex` module) by tests/py/tokenizer_tables.py, so that the
// C++ tokenizer follows the exact Unicode version the reference runs on.
#pragma once

#include <cstddef>

namespace clipscale::text::tables {

struct CodepointRange {
  char32_t first;
  char32_t last;  // inclusive
};
struct StringEntry {
  const char* key;
  const char* utf8;
};
struct CodepointEntry {
  char32_t key;
  const char* utf8;
};

// html.entities.html5: entity name (with or without ';') -> text, sorted by name.
extern const StringEntry kHtml5Entities[];
extern const size_t kHtml5EntitiesSize;
// ftfy's entities ("NAME;", without '&') that html5 lacks or maps differently.
extern const StringEntry kFtfyExtraEntities[];
extern const size_t kFtfyExtraEntitiesSize;
// html.unescape's replacements for numeric references to C1 controls and NUL/CR.
extern const CodepointEntry kHtmlInvalidCharrefs[];
extern const size_t kHtmlInvalidCharrefsSize;
// Numeric references html.unescape drops entirely.
extern const CodepointRange kHtmlInvalidCodepoints[];
extern const size_t kHtmlInvalidCodepointsSize;
// ftfy's per-character fixes (C1 controls, Latin ligatures, character width,
// curly quotes) composed in the order fix_and_explain applies them.
extern const CodepointEntry kFtfyCharMap[];
extern const size_t kFtfyCharMapSize;
// Characters ftfy's remove_control_chars deletes.
extern const CodepointRange kFtfyRemovedControls[];
extern const size_t kFtfyRemovedControlsSize;
// What \d matches in Python's `re` (str patterns), for ftfy's ANSI escape regex.
extern const CodepointRange kPythonReDigits[];
extern const size_t kPythonReDigitsSize;
// str.isspace(), which str.split() and str.strip() use.
extern const CodepointRange kPythonSpace[];
extern const size_t kPythonSpaceSize;
// Code points unassigned in Python's unicodedata (category Cn).
extern const CodepointRange kPythonUnassigned[];
extern const size_t kPythonUnassignedSize;
// str.lower()'s final-sigma context: case-ignorable characters, and cased ones
// that are not also case-ignorable.
extern const CodepointRange kCaseIgnorable[];
extern const size_t kCaseIgnorableSize;
extern const CodepointRange kCased[];
extern const size_t kCasedSize;
// open_clip's pre-tokenisation regex for RE2, with every literal and \p class
// spelled out as the characters `regex` (IGNORECASE) matches.
extern const char kPreTokenizePattern[];

}  // namespace clipscale::text::tables
