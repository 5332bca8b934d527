// Pre-tokenizers of a tokenizer.json ("pre_tokenizer" field): they cut the text between
// added tokens into the pieces BPE works on. Supported: ByteLevel, Split, Digits, Metaspace,
// Punctuation, WhitespaceSplit, Sequence; other types are refused with the field named.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tlm {

// One piece of the text on its way through the pipeline.
struct Piece {
  std::string text;
  int32_t id = -1;        // >= 0: an added token, final; later stages leave it alone
  bool at_start = false;  // starts at byte 0 of the original input
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

SplitBehavior parse_split_behavior(const nlohmann::json& value, const std::string& where);

// Splits `piece` at the given matches (sorted, non-overlapping byte ranges) following HF's
// SplitDelimiterBehavior and appends the non-empty parts to `out`. With `invert` the
// matches are the parts to keep and the gaps are the delimiters.
void split_piece(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches,
                 SplitBehavior behavior, bool invert, std::vector<Piece>& out);

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Rewrites the pieces that are not added tokens; drops pieces that become empty.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// Returns nullptr for JSON null.
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const nlohmann::json& config,
                                                  const std::string& where);

// The pieces GGUF vocabularies and tests build directly.
std::unique_ptr<PreTokenizer> make_byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex);
std::unique_ptr<PreTokenizer> make_split_pre_tokenizer(const std::string& regex,
                                                       SplitBehavior behavior,
                                                       const std::string& where);
enum class PrependScheme { Always, First, Never };
std::unique_ptr<PreTokenizer> make_metaspace_pre_tokenizer(const std::string& replacement,
                                                           PrependScheme scheme, bool split);
std::unique_ptr<PreTokenizer> make_sequence_pre_tokenizer(
    std::vector<std::unique_ptr<PreTokenizer>> parts);

}  // namespace tlm
