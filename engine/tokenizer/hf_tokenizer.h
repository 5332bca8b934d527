// The HF `tokenizers` pipeline behind every tlm tokenizer: added tokens, normalizer,
// pre-tokenizer, BPE model, post-processor, decoder. The loaders (tokenizer.json, GGUF,
// SentencePiece tokenizer.model) differ only in how they assemble the parts.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/decoder.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/post_processor.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace tlm {

struct HfTokenizerParts {
  std::string source;  // the file the tokenizer came from, for messages
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<BpeModel> model;
  AddedVocabulary added;  // finalized by HfTokenizer
  std::unique_ptr<Decoder> decoder;
  PostProcessor post;
  std::optional<int32_t> bos, eos, pad;
  std::string chat_template;
};

class HfTokenizer : public Tokenizer {
 public:
  explicit HfTokenizer(HfTokenizerParts parts);

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> token_id(std::string_view token) const override;
  bool is_special(int32_t id) const override;
  std::optional<int32_t> bos_id() const override { return parts_.bos; }
  std::optional<int32_t> eos_id() const override { return parts_.eos; }
  std::optional<int32_t> pad_id() const override { return parts_.pad; }
  int decode_strips_leading_spaces() const override;
  const std::string& chat_template_text() const override { return parts_.chat_template; }

  // The token string of an id (added-token content or model vocabulary entry).
  std::string token_string(int32_t id) const;

 private:
  HfTokenizerParts parts_;
};

}  // namespace tlm
