// The tokenizer interface the engine sees. Implementations: byte-level BPE (from a
// tokenizer.json or a GGUF `gpt2` vocabulary) and SentencePiece (from tokenizer.model or
// a GGUF `llama` vocabulary). Encodings equal HF tokenizers' on the same files.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace tlm {

class GgufFile;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text to ids. Special and added tokens written in the text (e.g. "<|im_start|>") are
  // matched before BPE and become their own ids. `add_bos` adds the BOS token when the
  // tokenizer's configuration says BOS is added (HF `add_special_tokens=True`; it also
  // appends EOS where the configuration asks for that, as HF does).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
  // Ids to text; special tokens are written out unless `skip_special`.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;
  // The raw bytes one token stands for (for streaming decoding; see Utf8StreamDecoder).
  virtual std::string token_bytes(int32_t id) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> token_id(std::string_view token) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual std::optional<int32_t> pad_id() const = 0;

  // Leading spaces decode() removes from the start of a text (SentencePiece decoders drop
  // the space their pre-tokenizer prepended); Utf8StreamDecoder removes the same.
  virtual int decode_strips_leading_spaces() const { return 0; }
  // The model's Jinja chat template (tokenizer_config.json "chat_template", chat_template.jinja,
  // or GGUF tokenizer.chat_template); empty when the files carry none.
  virtual const std::string& chat_template_text() const {
    static const std::string none;
    return none;
  }
};

// Loads the tokenizer of an HF model directory: tokenizer.json (byte-level BPE) when
// present, else tokenizer.model (SentencePiece); tokenizer_config.json supplies add_bos,
// special-token names and the chat template text (chat_template.jinja wins when present).
// Encodes like transformers 5's AutoTokenizer on the same directory, including its rebuild
// of LlamaTokenizer's pipeline around a SentencePiece-style tokenizer.json.
std::unique_ptr<Tokenizer> load_tokenizer_from_directory(const std::string& directory);
// Loads the vocabulary embedded in a GGUF file (tokenizer.ggml.*).
std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GgufFile& gguf);

// The same vocabulary as HF files (tokenizer.json, tokenizer_config.json) that transformers'
// AutoTokenizer loads with the encodings load_tokenizer_from_gguf gives (what `tlm-ckpt merge`
// writes beside a merged GGUF base). Byte-level BPE (tokenizer.ggml.model gpt2) only; throws
// naming the file for other vocabularies.
struct GgufTokenizerFiles {
  nlohmann::json tokenizer;
  nlohmann::json tokenizer_config;
};
GgufTokenizerFiles hf_tokenizer_files_from_gguf(const GgufFile& gguf);

// Turns a stream of token ids into text that never ends inside a UTF-8 character: bytes of
// an incomplete character are held back until the token that completes it arrives.
class Utf8StreamDecoder {
 public:
  explicit Utf8StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  // The text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is held back at the end of the stream (invalid bytes become U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
  int strip_left_ = 0;  // leading spaces still to drop at the start of the stream
};

}  // namespace tlm
