// The parts of an HF model directory's tokenizer_config.json (and chat_template.jinja) that
// change how text is tokenized: add_bos/add_eos, named special tokens, extra added tokens,
// SentencePiece options, and the chat template text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/hf_tokenizer.h"

namespace tlm {

struct TokenizerConfig {
  std::string path;  // tokenizer_config.json; empty when the directory has none
  std::optional<bool> add_bos_token, add_eos_token, add_prefix_space, legacy;
  std::optional<std::string> bos_token, eos_token, unk_token, pad_token, tokenizer_class;
  // Every special token the file names (bos, eos, unk, pad, sep, cls, mask, additional_*).
  std::vector<std::string> special_tokens;
  std::vector<std::pair<int32_t, AddedToken>> added_tokens_decoder;
  std::string chat_template;
};

// Reads <directory>/tokenizer_config.json and <directory>/chat_template.jinja when present.
TokenizerConfig read_tokenizer_config(const std::string& directory);

// What transformers does after building the backend: adds the named special tokens that are
// not added tokens yet and sets the bos/eos/pad ids and the chat template. Without a
// tokenizer.json, add_bos_token/add_eos_token replace the post-processor by BOS + $A + EOS;
// with one, transformers 5 drops those flags and keeps the file's post-processor.
void apply_tokenizer_config(const TokenizerConfig& config, bool has_tokenizer_json,
                            HfTokenizerParts& parts);

}  // namespace tlm
