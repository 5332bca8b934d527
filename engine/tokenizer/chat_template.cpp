#include "engine/tokenizer/chat_template.h"

#include "engine/common/error.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

namespace {

constexpr const char* kAlpacaPreamble =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.";

std::string render_chatml(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt) {
  std::string out;
  // Both SmolLM2's and Qwen2.5's templates add their system prompt before the first message.
  if (t.default_system && !messages.empty() && messages[0].role != "system") {
    out += "<|im_start|>system\n" + *t.default_system + "<|im_end|>\n";
  }
  for (const auto& m : messages) {
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// Meta's Llama-3 template: contents are trimmed (Jinja `trim`), BOS opens the first turn.
std::string render_llama3(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt) {
  std::string out;
  std::vector<ChatMessage> all;
  if (t.default_system && (messages.empty() || messages[0].role != "system")) {
    all.push_back({"system", *t.default_system});
  }
  all.insert(all.end(), messages.begin(), messages.end());
  for (size_t i = 0; i < all.size(); ++i) {
    if (i == 0) out += t.bos_text;
    out += "<|start_header_id|>" + all[i].role + "<|end_header_id|>\n\n" +
           python_strip(all[i].content) + "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Meta's Llama-2 template: an optional system message folded into the first user turn,
// strictly alternating user/assistant turns, no generation prompt.
std::string render_llama2(const ChatTemplate& t, const std::vector<ChatMessage>& messages) {
  std::optional<std::string> system = t.default_system;
  size_t first = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    const size_t turn = i - first;
    const ChatMessage& m = messages[i];
    TLM_CHECK((m.role == "user") == (turn % 2 == 0),
              "llama2 chat template: conversation roles must alternate "
              "user/assistant/user/assistant/... (message ", i, " has role '", m.role, "')");
    std::string content = m.content;
    if (turn == 0 && system) content = "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + content;
    if (m.role == "user") {
      out += t.bos_text + "[INST] " + python_strip(content) + " [/INST]";
    } else if (m.role == "assistant") {
      out += " " + python_strip(content) + " " + t.end_of_turn();
    }
  }
  return out;
}

// Google's Gemma 3 template: BOS, a system message prefixed to the first user turn (untrimmed,
// then a blank line), strictly alternating user/model turns with trimmed contents.
std::string render_gemma(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt) {
  std::string prefix;
  size_t first = 0;
  if (!messages.empty() && messages[0].role == "system") {
    prefix = messages[0].content + "\n\n";
    first = 1;
  }
  std::string out = t.bos_text;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    TLM_CHECK((m.role == "user") == ((i - first) % 2 == 0),
              "gemma chat template: conversation roles must alternate user/assistant/user/assistant/... (message ",
              i, " has role '", m.role, "')");
    out += "<start_of_turn>" + std::string(m.role == "assistant" ? "model" : m.role) + "\n" +
           (i == first ? prefix : "") + python_strip(m.content) + "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

std::string render_alpaca(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt) {
  std::string system = t.default_system.value_or(kAlpacaPreamble);
  size_t first = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  std::string out = system + "\n\n";
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      out += "### Instruction:\n" + m.content + "\n\n";
    } else if (m.role == "assistant") {
      out += "### Response:\n" + m.content + t.end_of_turn();
    } else {
      TLM_FAIL("alpaca chat template: role '", m.role, "' of message ", i,
               " is not supported (system first, then user/assistant)");
    }
  }
  if (add_generation_prompt) out += "### Response:\n";
  return out;
}

// Undoes the backslash escapes of a Jinja string literal.
std::string jinja_unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      default: out += c; break;  // \\ \' \"
    }
  }
  return out;
}

// The system prompt a chatml template writes as one literal
// '<|im_start|>system\n...<|im_end|>' (newline written raw or as \n).
std::optional<std::string> chatml_default_system(const std::string& text) {
  const std::string open = "<|im_start|>system";
  const std::string close = "<|im_end|>";
  for (size_t pos = text.find(open); pos != std::string::npos;
       pos = text.find(open, pos + open.size())) {
    size_t start = pos + open.size();
    if (text.compare(start, 1, "\n") == 0) start += 1;
    else if (text.compare(start, 2, "\\n") == 0) start += 2;
    else continue;
    const size_t end = text.find(close, start);
    if (end == std::string::npos) continue;
    const std::string literal = text.substr(start, end - start);
    // A quote or brace means the text left the string literal (e.g. + messages[0]...).
    if (literal.empty() || literal.find_first_of("'\"{}") != std::string::npos) continue;
    return jinja_unescape(literal);
  }
  return std::nullopt;
}

bool contains(const std::string& text, const char* needle) {
  return text.find(needle) != std::string::npos;
}

}  // namespace

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  switch (kind) {
    case ChatTemplateKind::Chatml: return render_chatml(*this, messages, add_generation_prompt);
    case ChatTemplateKind::Llama3: return render_llama3(*this, messages, add_generation_prompt);
    case ChatTemplateKind::Llama2: return render_llama2(*this, messages);
    case ChatTemplateKind::Gemma: return render_gemma(*this, messages, add_generation_prompt);
    case ChatTemplateKind::Alpaca: return render_alpaca(*this, messages, add_generation_prompt);
    case ChatTemplateKind::Raw: {
      std::string out;
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i) out += "\n";
        out += messages[i].content;
      }
      return out;
    }
  }
  TLM_FAIL("unknown chat template kind");
}

std::string ChatTemplate::end_of_turn() const {
  switch (kind) {
    case ChatTemplateKind::Chatml: return "<|im_end|>";
    case ChatTemplateKind::Llama3: return "<|eot_id|>";
    case ChatTemplateKind::Llama2: return "</s>";
    case ChatTemplateKind::Gemma: return "<end_of_turn>";
    case ChatTemplateKind::Alpaca: return "\n\n";
    case ChatTemplateKind::Raw: return "";
  }
  return "";
}

std::string ChatTemplate::name() const {
  switch (kind) {
    case ChatTemplateKind::Chatml: return "chatml";
    case ChatTemplateKind::Llama3: return "llama3";
    case ChatTemplateKind::Llama2: return "llama2";
    case ChatTemplateKind::Gemma: return "gemma";
    case ChatTemplateKind::Alpaca: return "alpaca";
    case ChatTemplateKind::Raw: return "raw";
  }
  return "raw";
}

ChatTemplate chat_template_by_name(const std::string& name) {
  ChatTemplate t;
  if (name == "chatml") {
    t.kind = ChatTemplateKind::Chatml;
  } else if (name == "llama3") {
    t.kind = ChatTemplateKind::Llama3;
    t.bos_text = "<|begin_of_text|>";
  } else if (name == "llama2") {
    t.kind = ChatTemplateKind::Llama2;
    t.bos_text = "<s>";
  } else if (name == "gemma") {
    t.kind = ChatTemplateKind::Gemma;
    t.bos_text = "<bos>";
  } else if (name == "alpaca") {
    t.kind = ChatTemplateKind::Alpaca;
  } else if (name == "raw") {
    t.kind = ChatTemplateKind::Raw;
  } else {
    TLM_FAIL("unknown chat template '", name,
             "' (valid names: chatml, llama3, llama2, gemma, alpaca, raw)");
  }
  return t;
}

std::optional<ChatTemplate> chat_template_from_jinja(const std::string& jinja_text) {
  const std::string& text = jinja_text;
  if (contains(text, "<|im_start|>")) {
    ChatTemplate t = chat_template_by_name("chatml");
    t.default_system = chatml_default_system(text);
    return t;
  }
  if (contains(text, "<|start_header_id|>")) {
    // Llama-3.1+ templates add a dated system block (and tool plumbing) this renderer
    // does not reproduce; only the plain Llama-3 template is recognised.
    if (contains(text, "Cutting Knowledge Date")) return std::nullopt;
    return chat_template_by_name("llama3");
  }
  // Mistral's [INST] templates differ (no <<SYS>>, no stripping), so Llama-2 needs both.
  if (contains(text, "[INST]") && contains(text, "<<SYS>>")) {
    return chat_template_by_name("llama2");
  }
  if (contains(text, "<start_of_turn>") && contains(text, "first_user_prefix")) return chat_template_by_name("gemma");
  if (contains(text, "### Instruction:")) return chat_template_by_name("alpaca");
  return std::nullopt;
}

}  // namespace tlm
