#include "engine/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "engine/common/error.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

namespace {

// HF's cache limits: at most this many pieces, each shorter than kCacheMaxPiece bytes.
constexpr size_t kCacheCapacity = 10000;
constexpr size_t kCacheMaxPiece = 256;

}  // namespace

BpeModel::BpeModel(const std::vector<std::pair<std::string, int32_t>>& vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options, const std::string& where)
    : options_(std::move(options)) {
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    TLM_CHECK(id >= 0, where, ": token '", token, "' has negative id ", id);
    vocab_[token] = id;
    max_id = std::max(max_id, id);
  }
  // Ids index a table: one far beyond the vocabulary's size is a damaged file, not a 5 GB table
  // (found by fuzz.tokenizer_files). Real vocabularies number their entries 0..n-1.
  const int64_t limit = 4 * static_cast<int64_t>(vocab.size()) + 65536;
  TLM_CHECK(max_id < limit, where, ": a token id of ", max_id, " in a vocabulary of ", vocab.size(),
            " entries (ids are expected to number the entries 0..n-1)");
  vocab_r_.assign(static_cast<size_t>(max_id + 1), std::string());
  has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : vocab_) {
    vocab_r_[static_cast<size_t>(id)] = token;
    has_id_[static_cast<size_t>(id)] = true;
  }
  const size_t prefix_len = options_.continuing_subword_prefix.size();
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab_.find(a);
    auto ib = vocab_.find(b);
    TLM_CHECK(ia != vocab_.end(), where, ": merge ", rank, " '", a, " ", b, "': '", a,
              "' is not in the vocabulary");
    TLM_CHECK(ib != vocab_.end(), where, ": merge ", rank, " '", a, " ", b, "': '", b,
              "' is not in the vocabulary");
    std::string merged = a + b.substr(std::min(prefix_len, b.size()));
    auto im = vocab_.find(merged);
    TLM_CHECK(im != vocab_.end(), where, ": merge ", rank, " '", a, " ", b, "': result '",
              merged, "' is not in the vocabulary");
    // A repeated pair keeps its last rank, like the Rust map built from the list.
    merges_[pair_key(ia->second, ib->second)] = {static_cast<int32_t>(rank), im->second};
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab_.find(name);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
  if (options_.unk_token) {
    auto it = vocab_.find(*options_.unk_token);
    if (it != vocab_.end()) unk_id_ = it->second;
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || id >= id_limit() || !has_id_[static_cast<size_t>(id)]) return nullptr;
  return &vocab_r_[static_cast<size_t>(id)];
}

std::vector<int32_t> BpeModel::merge_word(std::string_view piece) const {
  struct Symbol {
    int32_t c;
    int32_t prev, next;
    size_t len;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  auto add = [&symbols](int32_t c, size_t len) {
    int32_t n = static_cast<int32_t>(symbols.size());
    if (!symbols.empty()) symbols.back().next = n;
    symbols.push_back({c, n - 1, -1, len});
  };

  // A pending unknown token (its id and byte length), emitted before the next known one.
  bool has_unk = false;
  int32_t unk_id = 0;
  size_t unk_len = 0;
  size_t pos = 0;
  while (pos < piece.size()) {
    const size_t start = pos;
    utf8_decode_at(piece, pos);
    const size_t byte_len = pos - start;
    std::string s(piece.substr(start, byte_len));
    if (start > 0) s = options_.continuing_subword_prefix + s;
    if (pos >= piece.size()) s += options_.end_of_word_suffix;

    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      if (has_unk) {
        add(unk_id, unk_len);
        has_unk = false;
      }
      add(it->second, byte_len);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : s) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        // HF adds these without first flushing a pending unknown; kept for parity.
        for (char c : s) add(byte_ids_[static_cast<uint8_t>(c)], 1);
        continue;
      }
    }
    if (options_.unk_token) {
      TLM_CHECK(unk_id_.has_value(), "BPE unk_token '", *options_.unk_token,
                "' is not in the vocabulary");
      if (has_unk && options_.fuse_unk) {
        unk_len += byte_len;
      } else {
        if (has_unk) add(unk_id, unk_len);
        has_unk = true;
        unk_id = *unk_id_;
        unk_len = byte_len;
      }
    }
  }
  if (has_unk) add(unk_id, unk_len);

  struct Merge {
    int32_t pos, rank, new_id;
  };
  // Lowest rank first, then leftmost position.
  auto later = [](const Merge& x, const Merge& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::priority_queue<Merge, std::vector<Merge>, decltype(later)> queue(later);
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    auto m = merges_.find(pair_key(symbols[i].c, symbols[i + 1].c));
    if (m != merges_.end()) {
      queue.push({static_cast<int32_t>(i), m->second.rank, m->second.new_id});
    }
  }
  while (!queue.empty()) {
    Merge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[static_cast<size_t>(top.pos)];
    if (cur.len == 0 || cur.next == -1) continue;
    const size_t next_pos = static_cast<size_t>(cur.next);
    const Symbol right = symbols[next_pos];
    auto m = merges_.find(pair_key(cur.c, right.c));
    if (m == merges_.end() || m->second.new_id != top.new_id) continue;

    cur.c = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next > -1 && static_cast<size_t>(right.next) < symbols.size()) {
      symbols[static_cast<size_t>(right.next)].prev = top.pos;
    }
    if (cur.prev >= 0) {
      auto mp = merges_.find(pair_key(symbols[static_cast<size_t>(cur.prev)].c, cur.c));
      if (mp != merges_.end()) queue.push({cur.prev, mp->second.rank, mp->second.new_id});
    }
    if (cur.next >= 0 && static_cast<size_t>(cur.next) < symbols.size()) {
      auto mn = merges_.find(pair_key(cur.c, symbols[static_cast<size_t>(cur.next)].c));
      if (mn != merges_.end()) queue.push({top.pos, mn->second.rank, mn->second.new_id});
    }
  }

  std::vector<int32_t> ids;
  ids.reserve(symbols.size());
  for (const auto& s : symbols) {
    if (s.len != 0) ids.push_back(s.c);
  }
  return ids;
}

void BpeModel::tokenize(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (options_.ignore_merges) {
    auto it = vocab_.find(std::string(piece));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() < kCacheMaxPiece;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(std::string(piece));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = merge_word(piece);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(piece), std::move(ids));
  }
}

}  // namespace tlm
