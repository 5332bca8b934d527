// The OpenAI HTTP API's request and response shapes, as tlm serve speaks them: the one place
// that reads a request body and writes a response body (POST /v1/chat/completions,
// POST /v1/completions and their server-sent-event chunks, GET /v1/models, errors). Pure:
// no model, no sockets, so every shape is unit-tested.
//
// Requests are checked strictly on the fields tlm uses (a wrong type or an out-of-range value
// is an ApiError naming the field, 400) and leniently on the rest (fields the OpenAI API has
// but tlm ignores, such as `user`, `frequency_penalty` or `logprobs: false`, are accepted).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/chat_template.h"

namespace tlm {

// A request the API refuses: HTTP status and OpenAI's {"error": {message, type, param, code}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, std::string message, std::string param = "", std::string code = "");
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  nlohmann::json body() const;

 private:
  int status_;
  std::string type_, param_, code_;
};

// OpenAI's error body for a status tlm answers without a handler's ApiError (404, 413, ...).
nlohmann::json api_error_body(int status, const std::string& message);

enum class Endpoint { Chat, Completion };

struct ApiLimits {
  int64_t max_tokens_default = 256;  // max_tokens when the request gives none
  int64_t max_tokens_limit = 1024;   // largest max_tokens a request may ask for
  double temperature_default = 0.0;  // the server's default (0 = greedy; OpenAI's is 1)
  size_t max_stop_sequences = 4;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;                  // as given ("base", "tlm", "tlm/<session>")
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions
  int64_t max_tokens = 0;             // resolved against ApiLimits
  double temperature = 0.0;
  double top_p = 1.0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
};

// Parses and checks a request body; throws ApiError (400) naming the field.
CompletionRequest parse_completion_request(Endpoint endpoint, const std::string& body, const ApiLimits& limits);

// What a `model` field names: the base without adapters, the shared adapter or a session's.
struct ModelRef {
  enum Kind { Base, Shared, Session } kind = Shared;
  std::string session;  // Session: the name after "tlm/"
  std::string id() const;  // "base", "tlm", "tlm/<session>"
};
// Throws ApiError 404 (model_not_found) for anything else; session names are 1-64 characters
// of [A-Za-z0-9._-].
ModelRef parse_model_ref(const std::string& model);

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// "stop" (a stop token or stop sequence ended it) or "length" (max_tokens).
struct CompletionResult {
  std::string text;
  std::string finish_reason;
  Usage usage;
};

nlohmann::json completion_response(const CompletionRequest& request, const std::string& id, int64_t created,
                                   const CompletionResult& result);
// One server-sent-event chunk's JSON: `text` new content (chat: the first chunk also carries
// the role), or the final chunk when finish_reason is set.
nlohmann::json completion_chunk(const CompletionRequest& request, const std::string& id, int64_t created,
                                const std::string& text, const std::optional<std::string>& finish_reason,
                                bool first);
// The usage chunk a stream ends with when stream_options.include_usage is set.
nlohmann::json usage_chunk(const CompletionRequest& request, const std::string& id, int64_t created,
                           const Usage& usage);
// JSON text with invalid UTF-8 (a partial multi-byte token) replaced by U+FFFD, never a throw.
std::string dump_json(const nlohmann::json& value);
// "data: <json>\n\n" and the terminating "data: [DONE]\n\n".
std::string sse_event(const nlohmann::json& payload);
std::string sse_done();

// GET /v1/models: {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}.
nlohmann::json models_response(const std::vector<std::string>& ids, int64_t created);

}  // namespace tlm
