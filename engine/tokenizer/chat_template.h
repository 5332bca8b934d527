// Built-in chat templates. Models ship Jinja templates; tlm recognises the family from the
// template text (or takes it by name) and renders it natively. Each renders exactly the
// text HF `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` gives
// for that model, default system prompt included where the model's template adds one.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tlm {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatTemplateKind { Chatml, Llama3, Llama2, Gemma, Alpaca, Raw };

struct ChatTemplate {
  ChatTemplateKind kind = ChatTemplateKind::Raw;
  // System message inserted when the conversation has none (chatml models such as SmolLM2
  // and Qwen2.5 add one; extracted from the template text when recognised).
  std::optional<std::string> default_system;
  std::string bos_text;  // e.g. "<|begin_of_text|>" for llama3, "<s>" for llama2, "<bos>" for gemma

  std::string render(const std::vector<ChatMessage>& messages,
                     bool add_generation_prompt) const;
  // The text that ends an assistant turn ("<|im_end|>", "<|eot_id|>", ...); empty for raw.
  std::string end_of_turn() const;
  std::string name() const;
};

// "chatml", "llama3", "llama2", "gemma", "alpaca", "raw"; throws listing the valid names otherwise.
ChatTemplate chat_template_by_name(const std::string& name);
// Recognises the family from a model's Jinja template text; nullopt when unknown.
std::optional<ChatTemplate> chat_template_from_jinja(const std::string& jinja_text);

}  // namespace tlm
