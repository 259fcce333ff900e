// The tokenizer's Unicode building blocks against Python over every code point
// (tests/py/tokenizer_unicode_reference.py): str.lower, str.isspace, NFC, the
// pre-tokenisation regex, plus html.unescape/ftfy.unescape_html on entity soup,
// final-sigma contexts and UTF-8 decoding of random bytes with replacement.
// All comparisons are exact; known gaps are listed where they are allowed.
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "data/text_clean.h"
#include "data/tokenizer.h"
#include "data/unicode_text.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

struct Block {
  uint32_t first = 0;
  std::string text, lower, nfc, space;
  uint32_t crc = 0, count = 0;
};
using Pairs = std::vector<std::pair<std::string, std::string>>;

class Reader {
 public:
  explicit Reader(std::string data) : data_(std::move(data)) {}
  uint32_t U32() {
    CS_CHECK(pos_ + 4 <= data_.size());
    uint32_t v;
    std::memcpy(&v, data_.data() + pos_, 4);
    pos_ += 4;
    return v;
  }
  std::string Bytes() {
    uint32_t n = U32();
    CS_CHECK(pos_ + n <= data_.size());
    pos_ += n;
    return data_.substr(pos_ - n, n);
  }
  Pairs ReadPairs() {
    Pairs pairs(U32());
    for (auto& [a, b] : pairs) {
      a = Bytes();
      b = Bytes();
    }
    return pairs;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

struct Reference {
  std::vector<Block> blocks;
  Pairs sigma, entities, bytes;
};

const Reference& Ref() {
  static const Reference* ref = [] {
    std::string dir = testing::MakeTempDir();
    CS_CHECK_OK(testing::RunPythonScript("tokenizer_unicode_reference.py", {dir}).status());
    std::ifstream file(dir + "/unicode.bin", std::ios::binary);
    std::stringstream buffer;
    buffer << file.rdbuf();
    Reader reader(buffer.str());
    auto* r = new Reference;
    r->blocks.resize(reader.U32());
    for (Block& b : r->blocks) {
      b.first = reader.U32();
      b.text = reader.Bytes();
      b.lower = reader.Bytes();
      b.nfc = reader.Bytes();
      b.space = reader.Bytes();
      b.crc = reader.U32();
      b.count = reader.U32();
    }
    r->sigma = reader.ReadPairs();
    r->entities = reader.ReadPairs();
    r->bytes = reader.ReadPairs();
    return r;
  }();
  return *ref;
}

// The first code point where two UTF-8 strings differ, for messages.
std::string FirstDifference(const std::string& ours, const std::string& theirs) {
  std::u32string a = text::DecodeUtf8(ours), b = text::DecodeUtf8(theirs);
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  auto at = [&](const std::u32string& s) {
    return i < s.size() ? absl::StrFormat("U+%04X", static_cast<uint32_t>(s[i])) : "end";
  };
  return absl::StrCat("at index ", i, ": ours ", at(a), ", Python ", at(b));
}

TEST(TokenizerUnicodeTest, CoversEveryCodePoint) {
  size_t total = 0;
  for (const Block& b : Ref().blocks) total += text::DecodeUtf8(b.text).size();
  EXPECT_EQ(total, 0x110000u - 0x800u);
}

TEST(TokenizerUnicodeTest, LowerMatchesPythonStrLower) {
  for (const Block& b : Ref().blocks) {
    std::string ours = text::EncodeUtf8(text::PythonLower(text::DecodeUtf8(b.text)));
    EXPECT_TRUE(ours == b.lower) << "block at U+" << std::hex << b.first << " "
                                 << FirstDifference(ours, b.lower);
  }
  for (const auto& [input, expected] : Ref().sigma) {
    EXPECT_EQ(text::EncodeUtf8(text::PythonLower(text::DecodeUtf8(input))), expected) << input;
  }
}

TEST(TokenizerUnicodeTest, IsSpaceMatchesPython) {
  for (const Block& b : Ref().blocks) {
    std::u32string chars = text::DecodeUtf8(b.text);
    for (size_t i = 0; i < chars.size(); ++i) {
      EXPECT_EQ(text::IsPythonSpace(chars[i]), b.space[i] != 0)
          << "U+" << std::hex << static_cast<uint32_t>(chars[i]);
    }
  }
}

// utf8proc 2.8 implements Unicode 15.0, Python 3.11's unicodedata 14.0 (e.g. the
// Nag Mundari marks U+1E4EC.. are combining to utf8proc, unassigned to Python);
// NormalizeNfc treats what Python does not know as Python does, so this is exact.
TEST(TokenizerUnicodeTest, NfcMatchesPython) {
  for (const Block& b : Ref().blocks) {
    std::string ours = text::EncodeUtf8(text::NormalizeNfc(text::DecodeUtf8(b.text)));
    EXPECT_TRUE(ours == b.nfc) << "block at U+" << std::hex << b.first << " "
                               << FirstDifference(ours, b.nfc);
  }
}

TEST(TokenizerUnicodeTest, PreTokenizerMatchesOpenClipRegex) {
  auto tokenizer = ClipTokenizer::LoadDefault();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  for (const Block& b : Ref().blocks) {
    std::string probe;
    for (char32_t c : text::DecodeUtf8(b.text)) {
      std::string ch = text::EncodeUtf8(std::u32string(1, c));
      absl::StrAppend(&probe, "x", ch, "1", ch, ".", ch, " ");
    }
    std::vector<std::string> pieces = tokenizer->PreTokenize(probe);
    std::string joined;
    for (const auto& piece : pieces) absl::StrAppend(&joined, joined.empty() ? "" : " ", piece);
    uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(joined.data()), joined.size());
    EXPECT_TRUE(crc == b.crc && pieces.size() == b.count)
        << "block at U+" << std::hex << b.first << std::dec << ": " << pieces.size()
        << " pieces vs " << b.count;
  }
}

TEST(TokenizerUnicodeTest, HtmlUnescapeMatchesPython) {
  for (const auto& [input, expected] : Ref().entities) {
    std::u32string text = text::DecodeUtf8(input);
    std::string ours = text::EncodeUtf8(text::HtmlUnescape(text)) + '\0' +
                       text::EncodeUtf8(text::FtfyUnescapeHtml(text));
    EXPECT_EQ(ours, expected) << "input '" << input << "' (html.unescape, then ftfy's)";
  }
}

TEST(TokenizerUnicodeTest, Utf8DecodingMatchesPythonReplace) {
  for (const auto& [input, expected] : Ref().bytes) {
    EXPECT_EQ(text::EncodeUtf8(text::DecodeUtf8(input)), expected)
        << absl::StrCat("bytes ", absl::CHexEscape(input));
  }
}

}  // namespace
}  // namespace clipscale
