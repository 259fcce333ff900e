#include "data/tokenizer.h"

#include <re2/re2.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <mutex>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "core/paths.h"
#include "core/status.h"
#include "data/bpe.h"
#include "data/text_clean.h"
#include "data/tokenizer_tables.h"
#include "data/unicode_text.h"

namespace clipscale {
namespace {

constexpr char kStartOfText[] = "<start_of_text>";
constexpr char kEndOfText[] = "<end_of_text>";

// BPE results per pre-token. open_clip keeps an unbounded dict; here each of the
// shards is emptied when it fills, so memory stays bounded on endless streams of
// new words. Shards keep threads from queueing on one lock.
class BpeCache {
 public:
  bool Lookup(const std::string& token, std::vector<int32_t>* out) {
    Shard& shard = ShardOf(token);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(token);
    if (it == shard.map.end()) {
      ++shard.misses;
      return false;
    }
    ++shard.hits;
    out->insert(out->end(), it->second.begin(), it->second.end());
    return true;
  }

  void Insert(const std::string& token, std::vector<int32_t> ids) {
    Shard& shard = ShardOf(token);
    std::lock_guard<std::mutex> lock(shard.mu);
    if (shard.map.size() >= kMaxEntriesPerShard) shard.map.clear();
    shard.map.emplace(token, std::move(ids));
  }

  ClipTokenizer::CacheStats stats() {
    ClipTokenizer::CacheStats stats;
    for (Shard& shard : shards_) {
      std::lock_guard<std::mutex> lock(shard.mu);
      stats.hits += shard.hits;
      stats.misses += shard.misses;
    }
    return stats;
  }

 private:
  static constexpr int kShards = 64;
  static constexpr size_t kMaxEntriesPerShard = 4096;
  // Cache-line aligned so that threads on different shards do not contend.
  struct alignas(64) Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>> map;
    int64_t hits = 0, misses = 0;  // under mu: no shared atomic to bounce
  };
  Shard& ShardOf(const std::string& token) {
    return shards_[std::hash<std::string>()(token) % kShards];
  }

  std::array<Shard, kShards> shards_;
};

absl::StatusOr<std::string> ReadGzipFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("BPE vocabulary not found: ", path));
  }
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string text;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(file, buffer, sizeof(buffer))) > 0) text.append(buffer, n);
  int error = Z_OK;
  const char* message = n < 0 ? gzerror(file, &error) : nullptr;
  std::string detail = message ? message : "";
  gzclose(file);
  if (n < 0) return absl::DataLossError(absl::StrCat("cannot decompress ", path, ": ", detail));
  return text;
}

}  // namespace

struct ClipTokenizer::State {
  BpeModel bpe;
  std::unique_ptr<RE2> pattern;
  int32_t sot = 0;
  int32_t eot = 0;
  BpeCache cache;
};

absl::StatusOr<ClipTokenizer> ClipTokenizer::Load(const std::string& vocab_path) {
  ASSIGN_OR_RETURN(std::string text, ReadGzipFile(vocab_path));
  auto state = std::make_shared<State>();
  auto bpe = BpeModel::FromMergesText(text, {kStartOfText, kEndOfText});
  if (!bpe.ok()) return Annotate(bpe.status(), vocab_path);
  state->bpe = std::move(*bpe);
  state->sot = state->bpe.IdOf(kStartOfText);
  state->eot = state->bpe.IdOf(kEndOfText);
  RE2::Options options;
  options.set_max_mem(64 << 20);  // the Unicode classes make a large program
  state->pattern = std::make_unique<RE2>(text::tables::kPreTokenizePattern, options);
  if (!state->pattern->ok()) {
    return absl::InternalError(absl::StrCat("pre-tokenizer regex: ", state->pattern->error()));
  }
  return ClipTokenizer(std::move(state));
}

absl::StatusOr<ClipTokenizer> ClipTokenizer::LoadDefault() {
  ASSIGN_OR_RETURN(std::string path, FindDataFile(kDefaultVocabFile));
  return Load(path);
}

namespace {

// re.findall: a match anchored at pos, else skip one character (after cleaning,
// only spaces and U+0345 match none of the alternatives). Stops when fn is false.
template <class Fn>
void ForEachPiece(const RE2& pattern, const std::string& text, Fn fn) {
  const re2::StringPiece input(text);
  re2::StringPiece match;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!pattern.Match(input, pos, text.size(), RE2::ANCHOR_START, &match, 1)) {
      do {
        ++pos;
      } while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80);
      continue;
    }
    pos = match.data() + match.size() - text.data();
    if (!fn(std::string_view(match.data(), match.size()))) return;
  }
}

}  // namespace

void ClipTokenizer::EncodeInto(const std::string& text, int64_t max_ids,
                               std::vector<int32_t>* out) const {
  std::string token;
  std::vector<int32_t> ids;
  ForEachPiece(*state_->pattern, text::CleanCaption(text), [&](std::string_view piece) {
    token.assign(piece.data(), piece.size());
    if (token == kStartOfText || token == kEndOfText) {
      // open_clip's cache is pre-seeded with the special tokens.
      out->push_back(token == kStartOfText ? state_->sot : state_->eot);
    } else if (!state_->cache.Lookup(token, out)) {
      ids.clear();
      state_->bpe.Encode(token, &ids);
      out->insert(out->end(), ids.begin(), ids.end());
      state_->cache.Insert(token, ids);
    }
    return max_ids < 0 || static_cast<int64_t>(out->size()) < max_ids;
  });
}

std::vector<std::string> ClipTokenizer::PreTokenize(const std::string& cleaned) const {
  std::vector<std::string> pieces;
  ForEachPiece(*state_->pattern, cleaned, [&](std::string_view piece) {
    pieces.emplace_back(piece);
    return true;
  });
  return pieces;
}

std::vector<int32_t> ClipTokenizer::Encode(const std::string& text) const {
  std::vector<int32_t> ids;
  EncodeInto(text, -1, &ids);
  return ids;
}

void ClipTokenizer::TokenizeInto(const std::string& text, int context_length, int32_t* row) const {
  CS_CHECK_MSG(context_length > 0, "context_length must be positive, got ", context_length);
  // Ids past context_length - 1 can only be truncated away, so stop there.
  std::vector<int32_t> tokens = {state_->sot};
  EncodeInto(text, context_length, &tokens);
  tokens.push_back(state_->eot);
  if (tokens.size() > static_cast<size_t>(context_length)) {
    tokens.resize(context_length);
    tokens.back() = state_->eot;
  }
  std::fill(row, row + context_length, 0);
  std::copy(tokens.begin(), tokens.end(), row);
}

std::vector<int32_t> ClipTokenizer::Tokenize(const std::string& text, int context_length) const {
  std::vector<int32_t> row(std::max(context_length, 0));
  TokenizeInto(text, context_length, row.data());
  return row;
}

void ClipTokenizer::TokenizeBatch(const std::vector<std::string>& texts, int context_length,
                                  int32_t* out) const {
  for (size_t i = 0; i < texts.size(); ++i) {
    TokenizeInto(texts[i], context_length, out + i * static_cast<size_t>(context_length));
  }
}

std::string ClipTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id >= 0 && id < state_->bpe.vocab_size()) bytes += state_->bpe.TokenBytes(id);
  }
  std::string text = text::EncodeUtf8(text::DecodeUtf8(bytes));
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "</w>") == 0) {
      out.push_back(' ');
      i += 4;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

int32_t ClipTokenizer::sot_token() const { return state_->sot; }
int32_t ClipTokenizer::eot_token() const { return state_->eot; }
int ClipTokenizer::vocab_size() const { return state_->bpe.vocab_size(); }
ClipTokenizer::CacheStats ClipTokenizer::cache_stats() const { return state_->cache.stats(); }

}  // namespace clipscale
