#include "engine/serve/openai_api.h"

#include <cmath>
#include <limits>

namespace tlm {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "invalid_request_error", message, param);
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a number";
  }
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number(const json& body, const char* name, double fallback, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) bad(name, std::string("'") + name + "' must be a number, got " + type_name(*v));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(name, std::string("'") + name + "' must be in [" + json(lo).dump() + ", " + json(hi).dump() + "], got " +
                  v->dump());
  return x;
}

std::optional<int64_t> integer(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) bad(name, std::string("'") + name + "' must be an integer, got " + type_name(*v));
  return v->get<int64_t>();
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) bad(name, std::string("'") + name + "' must be a boolean, got " + type_name(*v));
  return v->get<bool>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string message_content(const json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(param, "'" + param + "' must be a string or an array of text parts, got " + type_name(content));
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string p = param + "[" + std::to_string(i) + "]";
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      bad(p, "'" + p + "' must be {\"type\": \"text\", \"text\": \"...\"} (tlm serves text only)");
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> read_messages(const json& body) {
  const json* m = field(body, "messages");
  if (!m) bad("messages", "'messages' is required");
  if (!m->is_array()) bad("messages", "'messages' must be an array, got " + type_name(*m));
  if (m->empty()) bad("messages", "'messages' must hold at least one message");
  std::vector<ChatMessage> out;
  bool any_text = false;
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string p = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) bad(p, "'" + p + "' must be an object, got " + type_name(msg));
    const json* role = field(msg, "role");
    if (!role || !role->is_string()) bad(p + ".role", "'" + p + ".role' must be a string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant")
      bad(p + ".role", "'" + p + ".role' must be system, developer, user or assistant, got '" + r + "'");
    const json* content = field(msg, "content");
    if (!content) bad(p + ".content", "'" + p + ".content' is required");
    ChatMessage cm{r, message_content(*content, p + ".content")};
    any_text |= !cm.content.empty() && r != "system";
    out.push_back(std::move(cm));
  }
  if (!any_text) bad("messages", "the conversation has no user or assistant text: nothing to answer");
  return out;
}

std::string read_prompt(const json& body) {
  const json* p = field(body, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  std::string prompt;
  if (p->is_string()) {
    prompt = p->get<std::string>();
  } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
    prompt = (*p)[0].get<std::string>();
  } else if (p->is_array()) {
    bad("prompt", "'prompt' must be one string (tlm answers one prompt per request)");
  } else {
    bad("prompt", "'prompt' must be a string, got " + type_name(*p));
  }
  if (prompt.empty()) bad("prompt", "'prompt' is empty: nothing to complete");
  return prompt;
}

std::vector<std::string> read_stop(const json& body, size_t max_sequences) {
  const json* s = field(body, "stop");
  if (!s) return {};
  std::vector<std::string> out;
  if (s->is_string()) {
    out.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    for (const json& v : *s) {
      if (!v.is_string()) bad("stop", "'stop' must be a string or an array of strings");
      out.push_back(v.get<std::string>());
    }
  } else {
    bad("stop", "'stop' must be a string or an array of strings, got " + type_name(*s));
  }
  if (out.size() > max_sequences) bad("stop", "'stop' holds at most " + std::to_string(max_sequences) + " sequences");
  for (const std::string& x : out)
    if (x.empty()) bad("stop", "'stop' sequences must not be empty");
  return out;
}

json base_object(const CompletionRequest& r, const std::string& id, int64_t created, bool chunk) {
  const bool chat = r.endpoint == Endpoint::Chat;
  return {{"id", id},
          {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", created},
          {"model", r.model},
          {"system_fingerprint", "tlm"}};
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

bool valid_session_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

}  // namespace

ApiError::ApiError(int status, std::string type, std::string message, std::string param, std::string code)
    : std::runtime_error(std::move(message)), status_(status), type_(std::move(type)), param_(std::move(param)),
      code_(std::move(code)) {}

json ApiError::body() const {
  return {{"error",
           {{"message", what()},
            {"type", type_},
            {"param", param_.empty() ? json(nullptr) : json(param_)},
            {"code", code_.empty() ? json(nullptr) : json(code_)}}}};
}

json api_error_body(int status, const std::string& message) {
  const std::string type = status == 401   ? "authentication_error"
                           : status == 404 ? "not_found_error"
                           : status == 429 ? "rate_limit_error"
                           : status >= 500 ? "server_error"
                                           : "invalid_request_error";
  return ApiError(status, type, message).body();
}

CompletionRequest parse_completion_request(Endpoint endpoint, const std::string& body_text, const ApiLimits& limits) {
  const json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) bad("", "the request body is not valid JSON");
  if (!body.is_object()) bad("", "the request body must be a JSON object, got " + type_name(body));
  CompletionRequest r;
  r.endpoint = endpoint;
  const json* model = field(body, "model");
  if (!model) bad("model", "'model' is required");
  if (!model->is_string()) bad("model", "'model' must be a string, got " + type_name(*model));
  r.model = model->get<std::string>();
  if (endpoint == Endpoint::Chat) r.messages = read_messages(body);
  else r.prompt = read_prompt(body);

  std::optional<int64_t> max_tokens = integer(body, "max_completion_tokens");
  if (!max_tokens) max_tokens = integer(body, "max_tokens");
  const std::string max_name = field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.max_tokens = max_tokens.value_or(limits.max_tokens_default);
  if (r.max_tokens < 1 || r.max_tokens > limits.max_tokens_limit)
    bad(max_name, "'" + max_name + "' must be in [1, " + std::to_string(limits.max_tokens_limit) + "], got " +
                      std::to_string(r.max_tokens));
  r.temperature = number(body, "temperature", limits.temperature_default, 0.0, 2.0);
  r.top_p = number(body, "top_p", 1.0, 0.0, 1.0);
  if (r.top_p <= 0.0) bad("top_p", "'top_p' must be in (0, 1]");
  if (std::optional<int64_t> seed = integer(body, "seed")) r.seed = static_cast<uint64_t>(*seed);
  if (std::optional<int64_t> n = integer(body, "n"); n && *n != 1) bad("n", "'n' must be 1 (tlm answers one choice)");
  r.stop = read_stop(body, limits.max_stop_sequences);
  r.stream = boolean(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  if (boolean(body, "logprobs", false)) bad("logprobs", "'logprobs' is not supported by tlm serve");
  return r;
}

std::string ModelRef::id() const {
  switch (kind) {
    case Base: return "base";
    case Shared: return "tlm";
    default: return "tlm/" + session;
  }
}

ModelRef parse_model_ref(const std::string& model) {
  ModelRef ref;
  if (model == "base") {
    ref.kind = ModelRef::Base;
    return ref;
  }
  if (model == "tlm") return ref;
  const std::string prefix = "tlm/";
  if (model.rfind(prefix, 0) == 0) {
    ref.kind = ModelRef::Session;
    ref.session = model.substr(prefix.size());
    bool ok = !ref.session.empty() && ref.session.size() <= 64;
    for (char c : ref.session) ok &= valid_session_char(c);
    if (ok) return ref;
    throw ApiError(400, "invalid_request_error",
                   "session names after 'tlm/' are 1-64 characters of A-Z a-z 0-9 . _ -, got '" + ref.session + "'",
                   "model");
  }
  throw ApiError(404, "invalid_request_error",
                 "the model '" + model + "' does not exist: use base, tlm or tlm/<session> (GET /v1/models)", "model",
                 "model_not_found");
}

json completion_response(const CompletionRequest& r, const std::string& id, int64_t created,
                         const CompletionResult& result) {
  json out = base_object(r, id, created, false);
  json choice = {{"index", 0}, {"finish_reason", result.finish_reason}, {"logprobs", nullptr}};
  if (r.endpoint == Endpoint::Chat) choice["message"] = {{"role", "assistant"}, {"content", result.text}};
  else choice["text"] = result.text;
  out["choices"] = json::array({choice});
  out["usage"] = usage_json(result.usage);
  return out;
}

json completion_chunk(const CompletionRequest& r, const std::string& id, int64_t created, const std::string& text,
                      const std::optional<std::string>& finish_reason, bool first) {
  json out = base_object(r, id, created, true);
  json choice = {{"index", 0}, {"logprobs", nullptr},
                 {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)}};
  if (r.endpoint == Endpoint::Chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && !finish_reason)) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  out["choices"] = json::array({choice});
  if (r.include_usage) out["usage"] = nullptr;
  return out;
}

json usage_chunk(const CompletionRequest& r, const std::string& id, int64_t created, const Usage& usage) {
  json out = base_object(r, id, created, true);
  out["choices"] = json::array();
  out["usage"] = usage_json(usage);
  return out;
}

std::string dump_json(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string sse_event(const json& payload) { return "data: " + dump_json(payload) + "\n\n"; }
std::string sse_done() { return "data: [DONE]\n\n"; }

json models_response(const std::vector<std::string>& ids, int64_t created) {
  json data = json::array();
  for (const std::string& id : ids)
    data.push_back({{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "tlm"}});
  return {{"object", "list"}, {"data", data}};
}

}  // namespace tlm
