#include "launch/serve_routes.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <memory>

#include <httplib.h>

#include "engine/common/log.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/learn/lora.h"
#include "engine/learn/peft_adapter.h"
#include "engine/serve/completion_text.h"
#include "engine/serve/serve_engine.h"
#include "engine/serve/serve_metrics.h"
#include "engine/serve/session_store.h"

namespace tlm {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump_json(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status(), e.body()); }

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string new_id(Endpoint endpoint) {
  static std::atomic<uint64_t> counter{0};
  return std::string(endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-") + std::to_string(unix_now()) + "-" +
         std::to_string(++counter);
}

// Everything a streamed answer needs across the content provider's calls.
struct Stream {
  CompletionRequest request;
  std::shared_ptr<RequestChannel> channel;
  CompletionText text;
  std::string id;
  int64_t created;
  int64_t prompt_tokens;
  Clock::time_point start;
  bool first = true;
};

class Handlers {
 public:
  explicit Handlers(ServeContext& c) : c_(c) {}

  void completion(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    const auto start = Clock::now();
    const std::string name = endpoint == Endpoint::Chat ? "chat" : "completions";
    try {
      CompletionRequest r = parse_completion_request(endpoint, req.body, c_.settings.limits);
      ServeJob job;
      job.ref = parse_model_ref(r.model);
      job.prompt = endpoint == Endpoint::Chat ? c_.encoder.encode_conversation(r.messages)
                                              : c_.encoder.encode_text(r.prompt);
      if (static_cast<int64_t>(job.prompt.size()) > c_.settings.max_prompt_tokens)
        throw ApiError(400, "invalid_request_error",
                       "the prompt is " + std::to_string(job.prompt.size()) + " tokens; this server takes at most " +
                           std::to_string(c_.settings.max_prompt_tokens),
                       endpoint == Endpoint::Chat ? "messages" : "prompt", "context_length_exceeded");
      job.max_tokens = r.max_tokens;
      job.sampling.temperature = r.temperature;
      job.sampling.top_p = r.top_p;
      job.sampling.seed = r.seed.value_or(c_.settings.default_seed);
      auto stream = std::make_shared<Stream>(Stream{r, nullptr, CompletionText(c_.encoder.tokenizer(), r.stop),
                                                    new_id(endpoint), unix_now(),
                                                    static_cast<int64_t>(job.prompt.size()), start});
      stream->channel = c_.engine.submit(std::move(job));
      if (r.stream) return start_stream(stream, res, name);
      answer_whole(*stream, res);
      c_.metrics.record_request(name, res.status, since(start));
    } catch (const ApiError& e) {
      send_error(res, e);
      c_.metrics.record_request(name, e.status(), since(start));
    }
  }

  void models(httplib::Response& res) {
    json ids = c_.engine.call([&] {
      std::vector<std::string> ids = c_.sessions.ids();
      if (std::find(ids.begin(), ids.end(), "tlm") == ids.end()) ids.insert(ids.begin(), "tlm");
      ids.insert(ids.begin(), "base");
      return json(ids);
    });
    std::vector<std::string> list;
    for (const auto& id : ids) list.push_back(id.get<std::string>());
    send_json(res, 200, models_response(list, unix_now()));
  }

  void adapters(httplib::Response& res) {
    send_json(res, 200, c_.engine.call([&] {
      json data = json::array();
      for (const std::string& id : c_.sessions.ids()) {
        const Session* s = c_.sessions.find(id);
        if (!s) {
          data.push_back({{"id", id}, {"in_memory", false}});
          continue;
        }
        json a = {{"id", id}, {"in_memory", true}, {"steps", s->steps}, {"learned_prompts", s->learned},
                  {"requests", s->requests}, {"version", s->version},
                  {"queued_prompts", s->queue.size() + s->chunk.size() - std::min(s->chunk.size(), s->chunk_pos)}};
        if (c_.sessions.guarded())
          a["guards"] = {{"resets_loss_floor", s->guards.resets_floor}, {"resets_periodic", s->guards.resets_periodic},
                         {"probes", s->guards.probes}, {"rollbacks", s->guards.rollbacks}};
        data.push_back(std::move(a));
      }
      return json{{"object", "list"}, {"data", data}};
    }));
  }

  void export_adapter(const std::string& id, httplib::Response& res) {
    const ModelRef ref = parse_model_ref(id);
    if (ref.kind == ModelRef::Base) throw ApiError(400, "invalid_request_error", "the base model has no adapter", "model");
    const std::string dir = (std::filesystem::path(c_.settings.export_dir) /
                             (ref.kind == ModelRef::Shared ? "tlm" : "tlm-" + ref.session)).string();
    send_json(res, 200, c_.engine.call_everywhere("export", {{"id", ref.id()}, {"dir", dir}}));
  }

 private:
  void answer_whole(Stream& s, httplib::Response& res) {
    RequestChannel::Update u;
    while (!u.done) {
      u = s.channel->wait(std::chrono::milliseconds(100));
      s.text.add(u.tokens);
      if (s.text.stop_hit()) s.channel->cancel();
    }
    if (!u.error.empty()) throw ApiError(500, "server_error", u.error);
    s.text.finish();
    CompletionResult result{s.text.released(), u.stopped || s.text.stop_hit() ? "stop" : "length",
                            {s.prompt_tokens, s.text.tokens()}};
    send_json(res, 200, completion_response(s.request, s.id, s.created, result));
  }

  void start_stream(std::shared_ptr<Stream> s, httplib::Response& res, const std::string& name) {
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, s, name](size_t, httplib::DataSink& sink) {
      auto write = [&](const std::string& data) { return sink.is_writable() && sink.write(data.data(), data.size()); };
      const RequestChannel::Update u = s->channel->wait(std::chrono::milliseconds(100));
      const std::string text = s->text.add(u.tokens);
      if (s->text.stop_hit()) s->channel->cancel();
      const bool done = u.done || s->text.stop_hit();
      if (!text.empty() || (s->first && !done)) {
        if (!write(sse_event(completion_chunk(s->request, s->id, s->created, text, std::nullopt, s->first)))) {
          s->channel->cancel();  // the client went away: the engine drops the row
          return false;
        }
        s->first = false;
      } else if (!sink.is_writable()) {
        s->channel->cancel();
        return false;
      }
      if (!done) return true;
      if (!u.error.empty()) {
        write(sse_event(ApiError(500, "server_error", u.error).body()));
      } else {
        const std::string rest = s->text.finish();
        const std::string reason = u.stopped || s->text.stop_hit() ? "stop" : "length";
        write(sse_event(completion_chunk(s->request, s->id, s->created, rest, reason, s->first)));
        if (s->request.include_usage)
          write(sse_event(usage_chunk(s->request, s->id, s->created, {s->prompt_tokens, s->text.tokens()})));
      }
      write(sse_done());
      sink.done();
      c_.metrics.record_request(name, u.error.empty() ? 200 : 500, since(s->start));
      return true;
    });
  }

  ServeContext& c_;
};

bool authorised(const ServeContext& c, const httplib::Request& req) {
  if (c.settings.api_key.empty()) return true;
  return req.get_header_value("Authorization") == "Bearer " + c.settings.api_key;
}

}  // namespace

void install_routes(httplib::Server& server, ServeContext& c) {
  auto h = std::make_shared<Handlers>(c);
  server.set_payload_max_length(c.settings.max_body_bytes);
  server.set_pre_routing_handler([&c](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/healthz" || authorised(c, req)) return httplib::Server::HandlerResponse::Unhandled;
    send_json(res, 401, ApiError(401, "authentication_error",
                                 "missing or wrong API key: send Authorization: Bearer <key>", "", "invalid_api_key")
                            .body());
    c.metrics.record_request("auth", 401, 0.0);
    return httplib::Server::HandlerResponse::Handled;
  });
  server.Post("/v1/chat/completions", [h](const httplib::Request& req, httplib::Response& res) {
    h->completion(Endpoint::Chat, req, res);
  });
  server.Post("/v1/completions", [h](const httplib::Request& req, httplib::Response& res) {
    h->completion(Endpoint::Completion, req, res);
  });
  server.Get("/v1/models", [h](const httplib::Request&, httplib::Response& res) { h->models(res); });
  server.Get("/v1/adapters", [h](const httplib::Request&, httplib::Response& res) { h->adapters(res); });
  server.Post(R"(/v1/adapters/(tlm(?:/[A-Za-z0-9._-]+)?)/export)",
              [h](const httplib::Request& req, httplib::Response& res) {
                try {
                  h->export_adapter(req.matches[1], res);
                } catch (const ApiError& e) {
                  send_error(res, e);
                }
              });
  server.Get("/healthz", [&c](const httplib::Request&, httplib::Response& res) {
    const bool stopping = c.engine.stopping();
    send_json(res, stopping ? 503 : 200, json{{"status", stopping ? "stopping" : "ok"}});
  });
  server.Get("/metrics", [&c](const httplib::Request&, httplib::Response& res) {
    res.set_content(c.metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  // Statuses httplib answers itself (404 no route, 413 body too large, 400 bad framing) get
  // OpenAI's error body too.
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string message = res.status == 404   ? "no route " + req.method + " " + req.path
                                : res.status == 413 ? "the request body is larger than this server takes"
                                                    : "HTTP " + std::to_string(res.status);
    res.set_content(dump_json(api_error_body(res.status, message)), "application/json");
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log_error("request failed: " + what);
    send_json(res, 500, api_error_body(500, what));
  });
}

}  // namespace tlm
