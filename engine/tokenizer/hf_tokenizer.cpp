#include "engine/tokenizer/hf_tokenizer.h"

#include <algorithm>

#include "engine/common/error.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

HfTokenizer::HfTokenizer(HfTokenizerParts parts) : parts_(std::move(parts)) {
  TLM_CHECK(parts_.model != nullptr, parts_.source, ": tokenizer has no model");
  parts_.added.finalize(parts_.normalizer.get());
  const int32_t limit = vocab_size();
  auto check_id = [&](const char* what, const std::optional<int32_t>& id) {
    TLM_CHECK(!id || (*id >= 0 && *id < limit), parts_.source, ": ", what, " id ", *id,
              " is outside the vocabulary (size ", limit, ")");
  };
  check_id("BOS", parts_.bos);
  check_id("EOS", parts_.eos);
  check_id("padding", parts_.pad);
  for (int32_t id : parts_.post.prefix) check_id("post-processor", id);
  for (int32_t id : parts_.post.suffix) check_id("post-processor", id);
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<Piece> pieces(1);
  // Our callers may hand us arbitrary bytes; HF only ever sees valid strings.
  pieces[0].text = utf8_is_valid(text) ? std::string(text) : utf8_lossy(text);
  pieces[0].at_start = true;
  parts_.added.split(pieces, parts_.normalizer.get());
  if (parts_.pre_tokenizer) parts_.pre_tokenizer->pre_tokenize(pieces);

  std::vector<int32_t> ids;
  if (add_bos) ids = parts_.post.prefix;
  for (const auto& piece : pieces) {
    if (piece.id >= 0) ids.push_back(piece.id);
    else parts_.model->tokenize(piece.text, ids);
  }
  if (add_bos) ids.insert(ids.end(), parts_.post.suffix.begin(), parts_.post.suffix.end());
  return ids;
}

std::string HfTokenizer::token_string(int32_t id) const {
  if (const std::string* added = parts_.added.decode_text(id)) return *added;
  const std::string* token = parts_.model->id_to_token(id);
  TLM_CHECK(token != nullptr, parts_.source, ": token id ", id, " is not in the vocabulary");
  return *token;
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special && parts_.added.is_special(id)) continue;
    tokens.push_back(token_string(id));
  }
  return decode_tokens(parts_.decoder.get(), std::move(tokens));
}

std::string HfTokenizer::token_bytes(int32_t id) const {
  std::string token = token_string(id);
  return parts_.decoder ? parts_.decoder->token_bytes(std::move(token)) : token;
}

int32_t HfTokenizer::vocab_size() const {
  return std::max(parts_.model->id_limit(), parts_.added.id_limit());
}

std::optional<int32_t> HfTokenizer::token_id(std::string_view token) const {
  if (auto id = parts_.added.token_to_id(std::string(token))) return id;
  return parts_.model->token_to_id(token);
}

bool HfTokenizer::is_special(int32_t id) const { return parts_.added.is_special(id); }

int HfTokenizer::decode_strips_leading_spaces() const {
  return parts_.decoder ? parts_.decoder->leading_spaces_stripped() : 0;
}

}  // namespace tlm
