// libFuzzer target: chat-template recognition on arbitrary Jinja text (a model's
// tokenizer_config.json "chat_template"). Only tlm::Error may escape; a recognised template
// renders a two-turn conversation with and without the generation prompt.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/common/error.h"
#include "engine/tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    if (const auto t = tlm::chat_template_from_jinja(text)) {
      const std::vector<tlm::ChatMessage> messages = {{"user", "Hi"}, {"assistant", "Hello."}, {"user", "Why?"}};
      (void)t->render(messages, true);
      (void)t->render(messages, false);
      (void)t->end_of_turn();
      (void)t->name();
    }
  } catch (const tlm::Error&) {
  }
  return 0;
}
