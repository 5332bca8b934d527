// Prompt text -> token ids the way the model was trained to see it: the user turn rendered
// through the chat template (with the generation prompt), tokenized, and cut to cutoff_len
// tokens from the right as the official TLM code's tokenizer(truncation=True) does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace tlm {

struct EncodedPrompt {
  std::vector<int32_t> ids;
  bool truncated = false;
};

class PromptEncoder {
 public:
  // cutoff_len <= 0 means no limit.
  PromptEncoder(const Tokenizer& tokenizer, ChatTemplate chat_template, int64_t cutoff_len);

  std::string render(const std::string& prompt) const;
  EncodedPrompt encode(const std::string& prompt) const;
  // A conversation through the chat template with the generation prompt, tokenized, without
  // the cutoff (a server refuses an over-long prompt rather than cutting it).
  std::vector<int32_t> encode_conversation(const std::vector<ChatMessage>& messages) const;
  // Plain text with the tokenizer's BOS, no template (OpenAI's /v1/completions).
  std::vector<int32_t> encode_text(const std::string& text) const;
  // Ids of the reference answer as the model would continue the rendered prompt
  // (no BOS, no special handling), for teacher-forced answer NLL.
  std::vector<int32_t> encode_continuation(const std::string& text) const;

  const ChatTemplate& chat_template() const { return template_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  const Tokenizer& tokenizer_;
  ChatTemplate template_;
  int64_t cutoff_len_;
};

}  // namespace tlm
