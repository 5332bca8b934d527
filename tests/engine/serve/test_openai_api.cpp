// The OpenAI request and response shapes: every field tlm uses parsed and checked (a wrong
// type or range is a 400 naming the field), model names resolved, responses and stream
// chunks shaped as OpenAI's API documents them.
#include <gtest/gtest.h>

#include "engine/serve/openai_api.h"

namespace tlm {
namespace {

using nlohmann::json;

CompletionRequest chat(const json& body, const ApiLimits& limits = {}) {
  return parse_completion_request(Endpoint::Chat, body.dump(), limits);
}

// The ApiError a body gets: its status and param.
std::pair<int, std::string> refusal(Endpoint endpoint, const std::string& body) {
  try {
    parse_completion_request(endpoint, body, ApiLimits{});
  } catch (const ApiError& e) {
    return {e.status(), e.param()};
  }
  return {0, ""};
}

const json kUser = json::array({{{"role", "user"}, {"content", "hi"}}});

TEST(OpenAiApi, ParsesAChatRequest) {
  ApiLimits limits;
  limits.max_tokens_default = 77;
  CompletionRequest r = chat({{"model", "tlm/alice"},
                              {"messages", json::array({{{"role", "developer"}, {"content", "be brief"}},
                                                        {{"role", "user"},
                                                         {"content", json::array({{{"type", "text"}, {"text", "a"}},
                                                                                  {{"type", "text"}, {"text", "b"}}})}}})},
                              {"temperature", 0.5},
                              {"top_p", 0.9},
                              {"seed", 3},
                              {"stop", "END"},
                              {"stream", true},
                              {"stream_options", {{"include_usage", true}}},
                              {"user", "ignored"},
                              {"frequency_penalty", 0}},
                             limits);
  EXPECT_EQ(r.model, "tlm/alice");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.max_tokens, 77);
  EXPECT_DOUBLE_EQ(r.temperature, 0.5);
  EXPECT_DOUBLE_EQ(r.top_p, 0.9);
  EXPECT_EQ(r.seed, 3u);
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(chat({{"model", "tlm"}, {"messages", kUser}, {"max_completion_tokens", 5}}).max_tokens, 5);
}

TEST(OpenAiApi, ParsesACompletionRequest) {
  CompletionRequest r = parse_completion_request(
      Endpoint::Completion, json{{"model", "base"}, {"prompt", json::array({"x"})}, {"max_tokens", 3}}.dump(), {});
  EXPECT_EQ(r.prompt, "x");
  EXPECT_EQ(r.max_tokens, 3);
  EXPECT_DOUBLE_EQ(r.temperature, 0.0) << "the server's default, not OpenAI's 1";
}

TEST(OpenAiApi, RefusesBadRequestsNamingTheField) {
  const std::string user = kUser.dump();
  const std::vector<std::tuple<Endpoint, std::string, std::string>> cases = {
      {Endpoint::Chat, "{not json", ""},
      {Endpoint::Chat, "[1]", ""},
      {Endpoint::Chat, R"({"messages":)" + user + "}", "model"},
      {Endpoint::Chat, R"({"model":1,"messages":)" + user + "}", "model"},
      {Endpoint::Chat, R"({"model":"tlm"})", "messages"},
      {Endpoint::Chat, R"({"model":"tlm","messages":[]})", "messages"},
      {Endpoint::Chat, R"({"model":"tlm","messages":[{"role":"user","content":""}]})", "messages"},
      {Endpoint::Chat, R"({"model":"tlm","messages":[{"role":"tool","content":"x"}]})", "messages[0].role"},
      {Endpoint::Chat, R"({"model":"tlm","messages":[{"role":"user","content":3}]})", "messages[0].content"},
      {Endpoint::Chat, R"({"model":"tlm","messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
       "messages[0].content[0]"},
      {Endpoint::Chat, R"({"model":"tlm","max_tokens":0,"messages":)" + user + "}", "max_tokens"},
      {Endpoint::Chat, R"({"model":"tlm","max_tokens":1.5,"messages":)" + user + "}", "max_tokens"},
      {Endpoint::Chat, R"({"model":"tlm","max_tokens":100000,"messages":)" + user + "}", "max_tokens"},
      {Endpoint::Chat, R"({"model":"tlm","temperature":"hot","messages":)" + user + "}", "temperature"},
      {Endpoint::Chat, R"({"model":"tlm","temperature":3,"messages":)" + user + "}", "temperature"},
      {Endpoint::Chat, R"({"model":"tlm","top_p":0,"messages":)" + user + "}", "top_p"},
      {Endpoint::Chat, R"({"model":"tlm","n":2,"messages":)" + user + "}", "n"},
      {Endpoint::Chat, R"({"model":"tlm","stop":[1],"messages":)" + user + "}", "stop"},
      {Endpoint::Chat, R"({"model":"tlm","stop":["a","b","c","d","e"],"messages":)" + user + "}", "stop"},
      {Endpoint::Chat, R"({"model":"tlm","stream":"yes","messages":)" + user + "}", "stream"},
      {Endpoint::Completion, R"({"model":"tlm","prompt":""})", "prompt"},
      {Endpoint::Completion, R"({"model":"tlm","prompt":["a","b"]})", "prompt"},
      {Endpoint::Completion, R"({"model":"tlm","prompt":5})", "prompt"},
  };
  for (const auto& [endpoint, body, param] : cases) {
    const auto [status, got] = refusal(endpoint, body);
    EXPECT_EQ(status, 400) << body;
    EXPECT_EQ(got, param) << body;
  }
}

TEST(OpenAiApi, ResolvesModelNames) {
  EXPECT_EQ(parse_model_ref("base").kind, ModelRef::Base);
  EXPECT_EQ(parse_model_ref("tlm").kind, ModelRef::Shared);
  const ModelRef s = parse_model_ref("tlm/team-a.v2_x");
  EXPECT_EQ(s.kind, ModelRef::Session);
  EXPECT_EQ(s.session, "team-a.v2_x");
  EXPECT_EQ(s.id(), "tlm/team-a.v2_x");
  for (const std::string& bad : std::vector<std::string>{"tlm/", "tlm/a b", "tlm/a/b", "tlm/" + std::string(65, 'x')}) {
    try {
      parse_model_ref(bad);
      ADD_FAILURE() << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400) << bad;
    }
  }
  try {
    parse_model_ref("gpt-4");
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 404);
    EXPECT_EQ(e.code(), "model_not_found");
    EXPECT_EQ(e.body()["error"]["param"], "model");
  }
}

TEST(OpenAiApi, ShapesResponsesAndChunks) {
  CompletionRequest r = chat({{"model", "tlm"}, {"messages", kUser}});
  const json full = completion_response(r, "chatcmpl-1", 100, {"Paris.", "stop", {7, 2}});
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "Paris.");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(full["usage"]["total_tokens"], 9);
  const json first = completion_chunk(r, "chatcmpl-1", 100, "Pa", std::nullopt, true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "Pa");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json last = completion_chunk(r, "chatcmpl-1", 100, "", std::string("length"), false);
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  r.include_usage = true;
  EXPECT_TRUE(usage_chunk(r, "x", 1, {3, 4})["choices"].empty());
  EXPECT_EQ(usage_chunk(r, "x", 1, {3, 4})["usage"]["completion_tokens"], 4);
  CompletionRequest c = parse_completion_request(Endpoint::Completion, R"({"model":"base","prompt":"x"})", {});
  EXPECT_EQ(completion_response(c, "cmpl-1", 1, {"y", "length", {1, 1}})["choices"][0]["text"], "y");
  EXPECT_EQ(completion_response(c, "cmpl-1", 1, {"y", "length", {1, 1}})["object"], "text_completion");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  // A partial multi-byte character never makes a response throw.
  EXPECT_NO_THROW(dump_json(completion_response(c, "cmpl-1", 1, {"\xe2\x82", "length", {1, 1}})));
  const json models = models_response({"base", "tlm"}, 5);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][1]["id"], "tlm");
  EXPECT_EQ(api_error_body(413, "too big")["error"]["type"], "invalid_request_error");
  EXPECT_EQ(api_error_body(401, "no")["error"]["type"], "authentication_error");
}

}  // namespace
}  // namespace tlm
