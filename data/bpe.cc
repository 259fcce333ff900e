#include "data/bpe.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "data/unicode_text.h"

namespace clipscale {
namespace {

// open_clip's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
// the other 68 bytes map to U+0100.. in byte order. Index i of the returned
// order is the vocabulary id of that byte's symbol.
std::vector<std::pair<uint8_t, char32_t>> BytesToUnicode() {
  std::vector<std::pair<uint8_t, char32_t>> order;
  bool printable[256] = {};
  for (int b = 0; b < 256; ++b) {
    printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable[b]) order.emplace_back(b, b);
  }
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    if (!printable[b]) order.emplace_back(b, next++);
  }
  return order;
}

using MergeList = std::vector<std::pair<std::string, std::string>>;

// Lines 1 .. kNumMerges of the file (line 0 is a version header), each "a b".
absl::StatusOr<MergeList> ParseMerges(std::string_view text) {
  MergeList merges;
  size_t start = text.find('\n');
  while (merges.size() < static_cast<size_t>(BpeModel::kNumMerges) &&
         start != std::string_view::npos) {
    size_t end = text.find('\n', start + 1);
    std::string_view line =
        text.substr(start + 1, end == std::string_view::npos ? end : end - start - 1);
    size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("BPE vocabulary line ", merges.size() + 2,
                                                     " is not a pair: ", std::string(line)));
    }
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    start = end;
  }
  if (merges.size() < static_cast<size_t>(BpeModel::kNumMerges)) {
    return absl::InvalidArgumentError(
        absl::StrCat("BPE vocabulary has ", merges.size(), " merges, need ", BpeModel::kNumMerges));
  }
  return merges;
}

// A vocabulary spelling back to raw bytes, as open_clip's byte_decoder does.
std::string RawBytes(const std::string& spelling,
                     const std::unordered_map<char32_t, uint8_t>& byte_of) {
  std::string bytes;
  for (char32_t cp : text::DecodeUtf8(spelling)) {
    auto it = byte_of.find(cp);
    if (it != byte_of.end()) {
      bytes.push_back(static_cast<char>(it->second));
    } else {
      text::AppendUtf8(cp, &bytes);
    }
  }
  return bytes;
}

}  // namespace

absl::StatusOr<BpeModel> BpeModel::FromMergesText(std::string_view text,
                                                  const std::vector<std::string>& specials) {
  ASSIGN_OR_RETURN(MergeList merges, ParseMerges(text));
  std::vector<std::string> vocab;  // unicode spellings, in id order
  std::unordered_map<char32_t, uint8_t> byte_of;
  for (const auto& [byte, cp] : BytesToUnicode()) {
    vocab.push_back(text::EncodeUtf8(std::u32string(1, cp)));
    byte_of[cp] = byte;
  }
  for (int i = 0; i < 256; ++i) vocab.push_back(vocab[i] + "</w>");
  for (const auto& [left, right] : merges) vocab.push_back(left + right);
  vocab.insert(vocab.end(), specials.begin(), specials.end());

  BpeModel model;
  // dict(zip(vocab, range(len(vocab)))): a repeated spelling keeps its last id.
  for (size_t id = 0; id < vocab.size(); ++id) model.encoder_[vocab[id]] = static_cast<int32_t>(id);
  for (const std::string& spelling : vocab)
    model.token_bytes_.push_back(RawBytes(spelling, byte_of));
  for (int i = 0; i < 256; ++i) {
    auto byte = static_cast<uint8_t>(model.token_bytes_[i][0]);
    model.byte_id_[byte] = model.encoder_[vocab[i]];
    model.byte_end_id_[byte] = model.encoder_[vocab[i + 256]];
  }
  // dict(zip(merges, range(...))): a repeated pair keeps its last rank.
  for (int rank = 0; rank < kNumMerges; ++rank) {
    const auto& [first, second] = merges[rank];
    int32_t left = model.IdOf(first), right = model.IdOf(second);
    if (left < 0 || right < 0) continue;  // a symbol no word can contain
    model.merges_[PairKey(left, right)] = {rank, model.IdOf(first + second)};
  }
  return model;
}

int32_t BpeModel::IdOf(const std::string& unicode_spelling) const {
  auto it = encoder_.find(unicode_spelling);
  return it == encoder_.end() ? -1 : it->second;
}

const BpeModel::Merge* BpeModel::FindMerge(int32_t left, int32_t right) const {
  auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::Encode(std::string_view token, std::vector<int32_t>* ids) const {
  if (token.empty()) return;
  std::vector<int32_t> word(token.size());
  for (size_t i = 0; i < token.size(); ++i) word[i] = byte_id_[static_cast<uint8_t>(token[i])];
  word.back() = byte_end_id_[static_cast<uint8_t>(token.back())];
  std::vector<int32_t> merged;
  while (word.size() > 1) {
    const Merge* best = nullptr;
    int32_t left = 0, right = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const Merge* m = FindMerge(word[i], word[i + 1]);
      if (m && (!best || m->rank < best->rank)) {
        best = m;
        left = word[i];
        right = word[i + 1];
      }
    }
    if (!best) break;
    // Every non-overlapping occurrence, left to right, as open_clip's loop does.
    merged.clear();
    for (size_t i = 0; i < word.size(); ++i) {
      if (i + 1 < word.size() && word[i] == left && word[i + 1] == right) {
        merged.push_back(best->merged);
        ++i;
      } else {
        merged.push_back(word[i]);
      }
    }
    word.swap(merged);
  }
  ids->insert(ids->end(), word.begin(), word.end());
}

}  // namespace clipscale
