// Decoders of a tokenizer.json ("decoder" field): token strings back to text. Supported:
// ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence. With no decoder, HF
// joins the tokens with spaces; decode_tokens() does the same for a null decoder.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tlm {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // HF decode_chain: each decoder maps the token list to a new list.
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
  // The raw bytes one token contributes in the middle of a text (no lossy UTF-8 fixing, no
  // start-of-text stripping), for streaming.
  virtual std::string token_bytes(std::string token) const = 0;
  // Leading spaces this decoder removes at the start of a whole text.
  virtual int leading_spaces_stripped() const { return 0; }
};

std::unique_ptr<Decoder> parse_decoder(const nlohmann::json& config, const std::string& where);

std::unique_ptr<Decoder> make_byte_level_decoder();
// Replace("▁", " "), ByteFallback, Fuse and, when `strip_leading_space`, Strip(" ", 1, 0):
// what HF's LlamaTokenizer decodes SentencePiece pieces with.
std::unique_ptr<Decoder> make_sentencepiece_decoder(bool strip_leading_space);

// Runs `decoder` (null: join with spaces) and concatenates the result.
std::string decode_tokens(const Decoder* decoder, std::vector<std::string> tokens);

}  // namespace tlm
