// The BPE model of HF `tokenizers` (models/bpe): a piece is cut into characters, looked up
// (with unk / byte fallback), then merged pair by pair, lowest merge rank first and
// leftmost first among equal ranks. Results are cached per piece.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tlm {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;  // empty: none
  std::string end_of_word_suffix;         // empty: none
  bool fuse_unk = false;
  bool byte_fallback = false;  // characters outside the vocabulary become <0xXX> tokens
  bool ignore_merges = false;  // a piece that is itself in the vocabulary is one token
};

class BpeModel {
 public:
  // `vocab` in file order; a token listed twice keeps its last id (as a Python dict or Rust
  // map built from the list would). Every merge "a b" needs a, b and ab in the vocabulary.
  // `where` names the file for error messages.
  BpeModel(const std::vector<std::pair<std::string, int32_t>>& vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& where);

  void tokenize(std::string_view piece, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr when no token has this id.
  const std::string* id_to_token(int32_t id) const;
  // Number of distinct tokens (HF's get_vocab_size, which numbers new added tokens).
  size_t size() const { return vocab_.size(); }
  // One past the largest id.
  int32_t id_limit() const { return static_cast<int32_t>(vocab_r_.size()); }

 private:
  struct MergeInfo {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::vector<int32_t> merge_word(std::string_view piece) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> vocab_r_;
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, MergeInfo> merges_;
  BpeOptions options_;
  int32_t byte_ids_[256];  // <0xXX> tokens for byte fallback, -1 when absent
  std::optional<int32_t> unk_id_;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace tlm
