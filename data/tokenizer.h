// CLIP's text tokenizer, id for id the same as open_clip.tokenize(): byte-level
// BPE over bpe_simple_vocab_16e6.txt.gz (49,408 tokens), <start_of_text> = 49406,
// <end_of_text> = 49407, rows padded with 0 and truncated to keep EOT last.
//
// Text is cleaned as open_clip does (ftfy.fix_text, html.unescape twice,
// whitespace collapsing, str.lower) with one exception: ftfy's heuristic mojibake
// repair is not reproduced (see data/text_clean.h). Invalid UTF-8 never fails:
// each invalid sequence becomes U+FFFD, as bytes.decode("utf-8", "replace") does.
//
// A ClipTokenizer is a cheap-to-copy handle to immutable state (plus an internal,
// locked cache of BPE results); all methods may be called from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

class ClipTokenizer {
 public:
  static constexpr int kDefaultContextLength = 77;
  static constexpr const char* kDefaultVocabFile = "bpe_simple_vocab_16e6.txt.gz";

  // Reads a gzip-compressed BPE vocabulary. NotFound (naming the path) when the
  // file is missing; InvalidArgument/DataLoss when it is not a CLIP vocabulary.
  static absl::StatusOr<ClipTokenizer> Load(const std::string& vocab_path);
  // Load(FindDataFile(kDefaultVocabFile)).
  static absl::StatusOr<ClipTokenizer> LoadDefault();

  // BPE ids of the cleaned text, without SOT/EOT (open_clip's SimpleTokenizer.encode).
  std::vector<int32_t> Encode(const std::string& text) const;

  // One row of open_clip.tokenize(text, context_length): SOT, ids, EOT, zero
  // padding; when too long, the first context_length tokens with the last set to
  // EOT. context_length must be positive.
  std::vector<int32_t> Tokenize(const std::string& text,
                                int context_length = kDefaultContextLength) const;

  // Tokenize() of every text into out, row-major [texts.size(), context_length].
  void TokenizeBatch(const std::vector<std::string>& texts, int context_length, int32_t* out) const;

  // open_clip's SimpleTokenizer.decode: token bytes joined, decoded as UTF-8 with
  // replacement, "</w>" turned into spaces. Ids outside the vocabulary are skipped.
  std::string Decode(const std::vector<int32_t>& ids) const;

  // The pieces open_clip's pre-tokenisation regex finds (re.findall) in text that
  // is already cleaned; each piece is BPE-encoded on its own.
  std::vector<std::string> PreTokenize(const std::string& cleaned) const;

  int32_t sot_token() const;
  int32_t eot_token() const;
  int vocab_size() const;

  // Statistics of the BPE cache, for benchmarks.
  struct CacheStats {
    int64_t hits = 0;
    int64_t misses = 0;
  };
  CacheStats cache_stats() const;

 private:
  struct State;
  explicit ClipTokenizer(std::shared_ptr<State> state) : state_(std::move(state)) {}

  // Appends ids to out until it holds at least max_ids (all of them when < 0).
  void EncodeInto(const std::string& text, int64_t max_ids, std::vector<int32_t>* out) const;
  void TokenizeInto(const std::string& text, int context_length, int32_t* row) const;

  std::shared_ptr<State> state_;
};

}  // namespace clipscale
