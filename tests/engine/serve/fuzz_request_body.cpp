// libFuzzer target: tlm serve's request bodies (POST /v1/chat/completions and
// /v1/completions) and `model` fields from arbitrary bytes. Only ApiError (a 4xx answer) may
// escape the parser; a request it accepts has max_tokens within the limits and at least one
// message or a prompt.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/common/error.h"
#include "engine/serve/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  tlm::ApiLimits limits;
  limits.max_tokens_limit = 64;
  for (const tlm::Endpoint endpoint : {tlm::Endpoint::Chat, tlm::Endpoint::Completion}) {
    try {
      const tlm::CompletionRequest r = tlm::parse_completion_request(endpoint, body, limits);
      if (r.max_tokens < 0 || r.max_tokens > limits.max_tokens_limit) __builtin_trap();
      if (endpoint == tlm::Endpoint::Chat && r.messages.empty()) __builtin_trap();
      (void)tlm::parse_model_ref(r.model);
    } catch (const tlm::ApiError&) {
    }
  }
  return 0;
}
