#include "engine/tokenizer/added_vocabulary.h"

#include <algorithm>

#include "engine/common/error.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

// A byte trie; scanning every start position and keeping the longest token that ends there
// gives the leftmost-longest matches HF's Aho-Corasick automaton reports.
struct AddedVocabulary::Trie {
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t value = -1;
  };
  std::vector<Node> nodes{Node{}};

  void insert(const std::string& key, int32_t value) {
    int32_t cur = 0;
    for (char ch : key) {
      const auto b = static_cast<uint8_t>(ch);
      auto& kids = nodes[static_cast<size_t>(cur)].children;
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, INT32_MIN));
      if (it != kids.end() && it->first == b) {
        cur = it->second;
      } else {
        int32_t fresh = static_cast<int32_t>(nodes.size());
        kids.insert(it, {b, fresh});
        nodes.emplace_back();
        cur = fresh;
      }
    }
    nodes[static_cast<size_t>(cur)].value = value;
  }

  // Longest key starting at `pos`: returns its end and sets `value`, or returns pos.
  size_t longest_at(const std::string& text, size_t pos, int32_t& value) const {
    int32_t cur = 0;
    size_t best = pos;
    for (size_t i = pos; i < text.size(); ++i) {
      const auto b = static_cast<uint8_t>(text[i]);
      const auto& kids = nodes[static_cast<size_t>(cur)].children;
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, INT32_MIN));
      if (it == kids.end() || it->first != b) break;
      cur = it->second;
      if (nodes[static_cast<size_t>(cur)].value >= 0) {
        best = i + 1;
        value = nodes[static_cast<size_t>(cur)].value;
      }
    }
    return best;
  }
};

AddedVocabulary::AddedVocabulary() = default;
AddedVocabulary::~AddedVocabulary() = default;
AddedVocabulary::AddedVocabulary(AddedVocabulary&&) noexcept = default;
AddedVocabulary& AddedVocabulary::operator=(AddedVocabulary&&) noexcept = default;

int32_t AddedVocabulary::id_limit() const {
  return by_id_.empty() ? 0 : by_id_.rbegin()->first + 1;
}

int32_t AddedVocabulary::add(const AddedToken& token, const BpeModel& model) {
  if (token.content.empty()) return -1;
  auto existing = by_content_.find(token.content);
  int32_t id;
  if (existing != by_content_.end()) {
    id = existing->second;
  } else if (auto model_id = model.token_to_id(token.content)) {
    id = *model_id;
  } else {
    // HF numbers new tokens after the model vocabulary, or after the last added token.
    const auto model_size = static_cast<int32_t>(model.size());
    if (by_id_.empty()) {
      id = model_size;
    } else {
      int32_t max_added = by_id_.rbegin()->first;
      id = (max_added >= model_size || model_size == 0) ? max_added + 1 : model_size;
    }
  }
  add_with_id(token, id);
  return id;
}

void AddedVocabulary::add_with_id(const AddedToken& token, int32_t id) {
  TLM_CHECK(!token.content.empty(), "an added token has empty content (id ", id, ")");
  by_content_[token.content] = id;
  by_id_[id] = token;
}

void AddedVocabulary::finalize(const Normalizer* normalizer) {
  normalized_text_.clear();
  raw_trie_.reset();
  normalized_trie_.reset();
  for (const auto& [id, token] : by_id_) {
    if (token.normalized) {
      std::string text = token.content;
      if (normalizer) {
        normalizer->normalize(text);
        if (text != token.content) normalized_text_[id] = text;
      }
      if (!normalized_trie_) normalized_trie_ = std::make_unique<Trie>();
      normalized_trie_->insert(text, id);
    } else {
      if (!raw_trie_) raw_trie_ = std::make_unique<Trie>();
      raw_trie_->insert(token.content, id);
    }
  }
}

namespace {

bool starts_with_word(const std::string& s, size_t pos) {
  if (pos >= s.size()) return false;
  return is_word_char(utf8_decode_at(s, pos));
}

bool ends_with_word(const std::string& s, size_t end) {
  if (end == 0) return false;
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  return is_word_char(utf8_decode_at(s, start));
}

// Start of the run of whitespace that ends at `end`.
size_t whitespace_run_before(const std::string& s, size_t end) {
  size_t begin = end;
  while (begin > 0) {
    size_t start = begin - 1;
    while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    size_t p = start;
    if (!is_white_space(utf8_decode_at(s, p))) break;
    begin = start;
  }
  return begin;
}

// End of the run of whitespace that starts at `begin`.
size_t whitespace_run_after(const std::string& s, size_t begin) {
  size_t pos = begin;
  while (pos < s.size()) {
    size_t p = pos;
    if (!is_white_space(utf8_decode_at(s, p))) break;
    pos = p;
  }
  return pos;
}

}  // namespace

void AddedVocabulary::split_pass(std::vector<Piece>& pieces, const Trie* trie) const {
  if (!trie) return;
  std::vector<Piece> out;
  out.reserve(pieces.size());
  auto emit = [&out](const Piece& parent, size_t b, size_t e, int32_t id) {
    if (b >= e) return;
    Piece p;
    p.text = parent.text.substr(b, e - b);
    p.id = id;
    p.at_start = parent.at_start && b == 0;
    out.push_back(std::move(p));
  };
  for (auto& piece : pieces) {
    if (piece.id >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    const std::string& s = piece.text;
    size_t start_offset = 0;
    size_t pos = 0;
    while (pos < s.size()) {
      int32_t id = -1;
      size_t stop = trie->longest_at(s, pos, id);
      if (stop == pos) {
        ++pos;
        continue;
      }
      const size_t match_end = stop;
      size_t start = pos;
      pos = match_end;  // the automaton resumes after the raw match
      const AddedToken& token = by_id_.at(id);
      if (token.single_word) {
        bool start_space = start == 0 || !ends_with_word(s, start);
        bool stop_space = stop == s.size() || !starts_with_word(s, stop);
        if (!start_space || !stop_space) continue;
      }
      if (token.lstrip) start = std::max(whitespace_run_before(s, start), start_offset);
      if (token.rstrip) stop = whitespace_run_after(s, stop);
      if (start_offset < start) emit(piece, start_offset, start, -1);
      emit(piece, start, stop, id);
      start_offset = stop;
    }
    if (start_offset < s.size()) emit(piece, start_offset, s.size(), -1);
  }
  pieces.swap(out);
}

void AddedVocabulary::split(std::vector<Piece>& pieces, const Normalizer* normalizer) const {
  split_pass(pieces, raw_trie_.get());
  if (normalizer) {
    for (auto& piece : pieces) {
      if (piece.id < 0) normalizer->normalize(piece.text);
    }
    pieces.erase(std::remove_if(pieces.begin(), pieces.end(),
                                [](const Piece& p) { return p.id < 0 && p.text.empty(); }),
                 pieces.end());
  }
  split_pass(pieces, normalized_trie_.get());
}

std::optional<int32_t> AddedVocabulary::token_to_id(const std::string& content) const {
  auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

const AddedToken* AddedVocabulary::token(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

const std::string* AddedVocabulary::decode_text(int32_t id) const {
  auto n = normalized_text_.find(id);
  if (n != normalized_text_.end()) return &n->second;
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second.content;
}

bool AddedVocabulary::is_special(int32_t id) const {
  auto it = by_id_.find(id);
  return it != by_id_.end() && it->second.special;
}

}  // namespace tlm
