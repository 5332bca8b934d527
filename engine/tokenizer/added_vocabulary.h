// Added tokens (HF AddedVocabulary): special and user tokens matched in the raw text before
// any normalization or pre-tokenization. Tokens flagged `normalized` are matched in a second
// pass against the normalized text. Matching is leftmost-longest; `single_word`, `lstrip`
// and `rstrip` behave as in HF tokenizers.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/pre_tokenizer.h"

namespace tlm {

class BpeModel;
class Normalizer;

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

class AddedVocabulary {
 public:
  AddedVocabulary();
  ~AddedVocabulary();
  AddedVocabulary(AddedVocabulary&&) noexcept;
  AddedVocabulary& operator=(AddedVocabulary&&) noexcept;

  // HF add_tokens: a token already in the model vocabulary (or added before) keeps that id,
  // others get the next free id. Returns the id; an empty token is ignored (returns -1), as
  // in HF. Call finalize() after the last add.
  int32_t add(const AddedToken& token, const BpeModel& model);
  // Adds a token at a fixed id (tokenizer.json "added_tokens" entries carry their ids).
  void add_with_id(const AddedToken& token, int32_t id);
  // Builds the matchers; `normalizer` (may be null) gives normalized tokens their match text.
  void finalize(const Normalizer* normalizer);

  // Splits the text pieces around added tokens: raw-text pass, then normalization (when
  // given) and the normalized pass. Pieces found get their id set.
  void split(std::vector<Piece>& pieces, const Normalizer* normalizer) const;

  std::optional<int32_t> token_to_id(const std::string& content) const;
  const AddedToken* token(int32_t id) const;
  // The text decoding uses for an added token: its normalized form when it was normalized.
  const std::string* decode_text(int32_t id) const;
  bool is_special(int32_t id) const;
  int32_t id_limit() const;  // one past the largest added id, 0 when empty
  bool empty() const { return by_id_.empty(); }

 private:
  struct Trie;
  void split_pass(std::vector<Piece>& pieces, const Trie* trie) const;

  std::unordered_map<std::string, int32_t> by_content_;
  std::map<int32_t, AddedToken> by_id_;
  std::unordered_map<int32_t, std::string> normalized_text_;
  std::unique_ptr<Trie> raw_trie_;
  std::unique_ptr<Trie> normalized_trie_;
};

}  // namespace tlm
