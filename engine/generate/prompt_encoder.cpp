#include "engine/generate/prompt_encoder.h"

namespace tlm {

PromptEncoder::PromptEncoder(const Tokenizer& tokenizer, ChatTemplate chat_template,
                             int64_t cutoff_len)
    : tokenizer_(tokenizer), template_(std::move(chat_template)), cutoff_len_(cutoff_len) {}

std::string PromptEncoder::render(const std::string& prompt) const {
  return template_.render({{"user", prompt}}, /*add_generation_prompt=*/true);
}

EncodedPrompt PromptEncoder::encode(const std::string& prompt) const {
  EncodedPrompt out;
  // The rendered template already carries any BOS text it needs (llama3, llama2), so BOS
  // is added by the tokenizer only for the raw template.
  const bool add_bos = template_.kind == ChatTemplateKind::Raw;
  out.ids = tokenizer_.encode(render(prompt), add_bos);
  if (cutoff_len_ > 0 && static_cast<int64_t>(out.ids.size()) > cutoff_len_) {
    out.ids.resize(static_cast<size_t>(cutoff_len_));
    out.truncated = true;
  }
  return out;
}

std::vector<int32_t> PromptEncoder::encode_conversation(const std::vector<ChatMessage>& messages) const {
  return tokenizer_.encode(template_.render(messages, /*add_generation_prompt=*/true),
                           /*add_bos=*/template_.kind == ChatTemplateKind::Raw);
}

std::vector<int32_t> PromptEncoder::encode_text(const std::string& text) const {
  return tokenizer_.encode(text, /*add_bos=*/true);
}

std::vector<int32_t> PromptEncoder::encode_continuation(const std::string& text) const {
  return tokenizer_.encode(text, /*add_bos=*/false);
}

}  // namespace tlm
