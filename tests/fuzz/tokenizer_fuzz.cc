// Captions are arbitrary bytes: tokenizing never fails, and every row has
// open_clip's shape (SOT first, EOT present, ids inside the vocabulary).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const clipscale::ClipTokenizer* tokenizer = [] {
    auto loaded = clipscale::ClipTokenizer::LoadDefault();
    FUZZ_CHECK(loaded.ok());
    return new clipscale::ClipTokenizer(*loaded);
  }();
  if (size == 0) return 0;
  const int context = 1 + data[0] % 80;  // short rows exercise truncation
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::vector<int32_t> ids = tokenizer->Encode(text);
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < tokenizer->vocab_size());
  const std::vector<int32_t> row = tokenizer->Tokenize(text, context);
  FUZZ_CHECK(static_cast<int>(row.size()) == context);
  FUZZ_CHECK(row[0] == tokenizer->sot_token() || context == 1);
  bool has_eot = false;
  for (int32_t id : row) {
    FUZZ_CHECK(id >= 0 && id < tokenizer->vocab_size());
    has_eot |= id == tokenizer->eot_token();
  }
  FUZZ_CHECK(has_eot);
  // The row holds the first ids of Encode() (truncated rows end in EOT instead).
  const size_t kept = std::min<size_t>(ids.size(), context >= 2 ? context - 2 : 0);
  for (size_t i = 0; i < kept; ++i) FUZZ_CHECK(row[1 + i] == ids[i]);
  (void)tokenizer->Decode(ids);
  (void)tokenizer->PreTokenize(text);
  return 0;
}
