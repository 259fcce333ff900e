// open_clip's caption cleaning (`_clean_lower` in open_clip/tokenizer.py):
//   whitespace_clean(basic_clean(text)).lower()
// where basic_clean = ftfy.fix_text, html.unescape twice, strip.
//
// ftfy.fix_text is reproduced except for its mojibake repair (fix_encoding and
// its helpers), which guesses at encodings with heuristics; every other fixer
// ftfy applies by default is here, table-driven from the venv's ftfy. So text
// that ftfy would re-decode (e.g. "cafÃ©" -> "café") is tokenized as written.
#pragma once

#include <string>
#include <string_view>

namespace clipscale::text {

// html.unescape(): HTML5 named references (with and without ';', longest-prefix
// matching), decimal and hex references with HTML5's replacements.
std::u32string HtmlUnescape(std::u32string_view text);

// ftfy's fixes.unescape_html: only ';'-terminated references, plus all-caps names.
std::u32string FtfyUnescapeHtml(std::u32string_view text);

// ftfy.fix_text(text, fix_encoding=False) with ftfy's default settings.
std::u32string FixTextLite(std::u32string_view text);

// The full cleaning: UTF-8 in (invalid bytes become U+FFFD), UTF-8 out.
std::string CleanCaption(std::string_view utf8);

}  // namespace clipscale::text
