// CLIP's byte-level BPE (open_clip's SimpleTokenizer.bpe) over raw UTF-8 bytes.
// Symbols are vocabulary ids; a merge joins two adjacent ids into the id of
// their concatenated string, lowest merge rank first, as open_clip does.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

class BpeModel {
 public:
  // Merges used by open_clip: lines 1 .. 48894 of the vocabulary text.
  static constexpr int kNumMerges = 49152 - 256 - 2;

  // Builds the vocabulary from the decompressed bpe_simple_vocab_16e6.txt:
  // 256 byte symbols, the same with "</w>", one per merge, then `specials`.
  static absl::StatusOr<BpeModel> FromMergesText(std::string_view text,
                                                 const std::vector<std::string>& specials);

  // Appends the ids of one pre-token (its UTF-8 bytes; the last symbol carries "</w>").
  void Encode(std::string_view token, std::vector<int32_t>* ids) const;

  // The id of a vocabulary entry spelled in open_clip's byte-to-unicode alphabet.
  int32_t IdOf(const std::string& unicode_spelling) const;

  // The raw bytes of a token, "</w>" included as text, as open_clip's decode sees it.
  const std::string& TokenBytes(int32_t id) const { return token_bytes_[id]; }
  int vocab_size() const { return static_cast<int>(token_bytes_.size()); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const Merge* FindMerge(int32_t left, int32_t right) const;

  std::array<int32_t, 256> byte_id_{};      // id of each byte's symbol
  std::array<int32_t, 256> byte_end_id_{};  // the same with "</w>"
  std::unordered_map<uint64_t, Merge> merges_;
  std::unordered_map<std::string, int32_t> encoder_;  // unicode spelling -> id
  std::vector<std::string> token_bytes_;
};

}  // namespace clipscale
