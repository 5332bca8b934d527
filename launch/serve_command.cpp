// tlm serve: an OpenAI-compatible HTTP server that answers requests with the current adapter
// of their session and learns from their prompts (the online TLM rule) while it serves.
//   tlm serve --config configs/serve.yaml [--host 127.0.0.1 --port 8000]
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <thread>

#include <ATen/ATen.h>
#include <cxxopts.hpp>
#include <httplib.h>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/learn/guards.h"
#include "engine/learn/job_setup.h"
#include "engine/learn/methods.h"
#include "engine/learn/peft_adapter.h"
#include "engine/serve/serve_engine.h"
#include "launch/adapt_recipe.h"
#include "launch/commands.h"
#include "launch/serve_routes.h"

namespace tlm {
namespace {

const std::vector<RecipeFlag> kServeFlags = {
    {"host", "serve.host", "address to listen on (127.0.0.1: this machine only)"},
    {"port", "serve.port", "TCP port (0: any free one, printed at start)"},
    {"learn", "serve.learn", "false: serve the adapters frozen (no learning from requests)"},
    {"api-key", "serve.api_key", "require Authorization: Bearer <key> (also from $TLM_API_KEY)"},
    {"max-sessions", "serve.max_sessions", "adapters kept in memory; least recently used ones go to the checkpoint folder"},
    {"max-batch-rows", "serve.max_batch_rows", "requests decoding at once; the rest wait their turn"},
    {"max-body-bytes", "serve.max_body_bytes", "largest request body (413 above)"},
    {"max-prompt-tokens", "serve.max_prompt_tokens", "longest prompt in tokens (400 above)"},
    {"max-tokens-limit", "serve.max_tokens_limit", "largest max_tokens a request may ask for"},
    {"http-threads", "serve.http_threads", "connections served at once"},
    {"export-dir", "serve.export_dir", "where POST /v1/adapters/<id>/export writes PEFT directories"},
};

std::atomic<int> g_signals{0};
extern "C" void on_serve_signal(int) { g_signals.fetch_add(1); }

struct ServeSettings {
  std::string host = "127.0.0.1";
  int port = 8000;
  bool learn = true;
  int64_t max_sessions = 64;
  int64_t max_batch_rows = 16;
  int64_t http_threads = 64;
  HttpSettings http;
};

ServeSettings read_serve_settings(const AdaptRecipe& recipe) {
  const RecipeReader& r = *recipe.values;
  ServeSettings s;
  s.host = r.get<std::string>("serve.host", s.host);
  s.port = r.get<int>("serve.port", s.port);
  s.learn = r.get<bool>("serve.learn", s.learn);
  s.http.api_key = r.get<std::string>("serve.api_key", "");
  if (s.http.api_key.empty())
    if (const char* env = std::getenv("TLM_API_KEY")) s.http.api_key = env;
  s.max_sessions = r.get<int64_t>("serve.max_sessions", s.max_sessions);
  s.max_batch_rows = r.get<int64_t>("serve.max_batch_rows", s.max_batch_rows);
  s.http_threads = r.get<int64_t>("serve.http_threads", s.http_threads);
  const auto body = r.get<int64_t>("serve.max_body_bytes", static_cast<int64_t>(s.http.max_body_bytes));
  s.http.max_body_bytes = static_cast<size_t>(body);
  s.http.max_prompt_tokens = r.get<int64_t>("serve.max_prompt_tokens", s.http.max_prompt_tokens);
  s.http.limits.max_tokens_limit = r.get<int64_t>("serve.max_tokens_limit", s.http.limits.max_tokens_limit);
  const AdaptConfig& c = recipe.adapt;
  s.http.limits.max_tokens_default = std::min(c.generation.max_new_tokens, s.http.limits.max_tokens_limit);
  s.http.limits.temperature_default = c.generation.sampling.temperature;
  s.http.default_seed = c.generation.sampling.seed;
  s.http.export_dir = r.get<std::string>("serve.export_dir", c.output_dir + "/adapters");
  s.http.base_model = recipe.model.model;
  return s;
}

CheckpointIdentity serve_identity(const LlamaModel& model, const AdaptRecipe& recipe, const TrainableSet& trainable,
                                  const Objective& objective) {
  const AdaptConfig& c = recipe.adapt;
  nlohmann::json method = {{"mode", "serve"}, {"lr", c.learning_rate}, {"schedule", c.schedule_name()},
                           {"stream_batch", c.stream_batch}, {"train_batch_size", c.train_batch_size},
                           {"fresh_optimizer_per_chunk", c.fresh_optimizer_per_chunk},
                           {"skip_unselected_steps", c.step.skip_unselected}, {"max_grad_norm", c.step.max_grad_norm}};
  method.update(trainable.describe());
  method.update(objective.spec());
  CheckpointIdentity id;
  id.engine_version = "tlm 0.1.0";
  id.base_model_path = recipe.model.model;
  id.base_config_hash = content_fingerprint(model.config().summary());
  id.base_weights_hash = model.weights_fingerprint();
  id.method_json = method.dump();
  return id;
}

// The collapse guards (guard.*) over the live adapter, made while it holds the fresh one; their
// events go to <output_dir>/guards.jsonl, after a resumed server's earlier ones. nullptr: none.
std::unique_ptr<CollapseGuards> serve_guards(const AdaptConfig& c, const LoadedModel& m, TestTimeLearner& learner) {
  if (!c.guards.any()) return nullptr;
  std::error_code ec;
  std::filesystem::create_directories(c.output_dir, ec);
  TLM_CHECK(!ec, c.output_dir, ": cannot create the output folder for guards.jsonl (", ec.message(), ")");
  const std::string events = c.output_dir + "/guards.jsonl";
  const std::vector<std::string> earlier = c.resume.empty() ? std::vector<std::string>{} : read_lines(events);
  std::unique_ptr<CollapseGuards> guards =
      make_guards(c, *m.encoder, m.grid, *m.model, learner, m.encoder->tokenizer().pad_id().value_or(0));
  guards->keep_events_until(earlier, std::numeric_limits<int64_t>::max());
  return guards;
}

// Rank 0: waits for SIGTERM/SIGINT (or the engine's end), then stops the engine (new
// requests get 503; in-flight ones finish). A second signal exits at once.
void watch_signals(ServeEngine& engine, const std::atomic<bool>& done) {
  while (g_signals.load() == 0 && !done) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (done) return;
  log_info("stopping: finishing the requests in flight, then checkpointing");
  engine.stop();
  std::thread watchdog([] {
    while (g_signals.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    log_error("second signal: exiting without waiting for the requests in flight");
    std::_Exit(130);
  });
  watchdog.detach();
}

// The replicated export (POST /v1/adapters/<id>/export): every rank assembles the full
// adapter, rank 0 writes the PEFT directory.
void add_export_call(ServeEngine& engine, SessionStore& sessions, TrainableSet& trainable, const std::string& base) {
  engine.add_call("export", [&sessions, &trainable, base](const nlohmann::json& arg, bool root) {
    const std::string id = arg.at("id").get<std::string>(), dir = arg.at("dir").get<std::string>();
    Session& s = sessions.get(id);
    sessions.load_live(s.params);
    const std::map<std::string, at::Tensor> state = trainable.full_state();  // collective over TP
    if (root) save_peft(dir, state, trainable.describe(), base, "tlm serve");
    return nlohmann::json{{"id", id}, {"path", dir}, {"steps", s.steps}, {"learned_prompts", s.learned}};
  });
}

// Rank 0 serves HTTP; the engine loop runs on the main thread of every rank (MPI is
// initialised for calls from the main thread only).
int serve_http(ServeEngine& engine, ServeContext& context, const ServeSettings& settings) {
  httplib::Server server;
  const size_t threads = static_cast<size_t>(settings.http_threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  install_routes(server, context);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which lets a second server bind
  // the same port and silently take half of the connections.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<void*>(&yes), sizeof(yes));
  });
  const int port = settings.port == 0 ? server.bind_to_any_port(settings.host) : settings.port;
  TLM_CHECK(port > 0 && (settings.port == 0 || server.bind_to_port(settings.host, port)), "cannot listen on ",
            settings.host, ":", settings.port, " (address in use, or not an address of this machine)");
  std::thread http_thread([&] { server.listen_after_bind(); });
  std::cout << "tlm serve: listening on http://" << settings.host << ":" << port << " (learning "
            << (settings.learn ? "on" : "off") << ", auth " << (settings.http.api_key.empty() ? "off" : "on") << ")"
            << std::endl;
  std::atomic<bool> done{false};
  std::thread watcher([&] { watch_signals(engine, done); });
  bool failed = false;
  try {
    engine.run();
  } catch (const std::exception& e) {
    log_error(std::string("the engine stopped: ") + e.what());
    failed = true;
  }
  done = true;
  watcher.join();
  server.stop();
  http_thread.join();
  return failed ? 1 : 0;
}

}  // namespace

int run_serve(int argc, char** argv) {
  cxxopts::Options options("tlm serve",
                           "An OpenAI-compatible server that learns while it serves: every request is answered with\n"
                           "its session's current adapter (model \"tlm\", \"tlm/<session>\", or \"base\"), then its\n"
                           "prompt joins that session's learning queue (the online TLM rule).\n\n"
                           "  tlm serve --config configs/serve.yaml --port 8000");
  options.add_options()("config", "YAML recipe (flags override its keys)", cxxopts::value<std::string>())(
      "h,help", "this help");
  add_recipe_flags(options, kServeFlags, "Serving");
  auto parsed = options.parse(argc, argv);
  if (parsed.count("help")) {
    std::cout << options.help({"", "Serving", "Recipe overrides"}) << std::endl;
    return 0;
  }
  AdaptRecipe recipe = load_adapt_recipe(parsed.count("config") ? parsed["config"].as<std::string>() : "", parsed,
                                         kServeFlags);
  ServeSettings settings = read_serve_settings(recipe);
  AdaptConfig& c = recipe.adapt;
  TLM_CHECK(recipe.model.dp_size == 1, "tlm serve shards the model with tensor parallelism only (parallel.dp_size 1, "
            "got ", recipe.model.dp_size, "): run one server per replica");
  TLM_CHECK(!c.method.needs_generated_tokens(), "tlm serve learns from the prompts: method '", c.method.name,
            "' with objective.positions generated is not served");
  LoadedModel m = load_model(recipe.model);
  at::manual_seed(c.lora.seed);  // every server starts its sessions from the same adapter
  std::unique_ptr<TrainableSet> trainable = make_trainable(*m.model, c);  // LoRA or norm-affine; --init-adapter
  TestTimeLearner learner(*m.model, *trainable, make_objective(c.method, *m.model), c.step, c.adamw);
  std::unique_ptr<CollapseGuards> guards = serve_guards(c, m, learner);
  SessionStore sessions(*trainable, learner, serve_identity(*m.model, recipe, *trainable, learner.objective()),
                        {settings.max_sessions, c.checkpoints.directory, c.checkpoints.keep_last, m.grid.is_root(),
                         m.grid.tp_size > 1},
                        guards.get());
  if (c.resume == "latest") {
    TLM_CHECK(sessions.persistent(), "--resume latest needs checkpoint.dir (--checkpoint-dir)");
    log_info(str_cat("resumed ", sessions.resume_all(), " sessions from ", c.checkpoints.directory));
  } else {
    TLM_CHECK(c.resume.empty(), "tlm serve resumes every session of its folder: --resume latest (got '", c.resume, "')");
    TLM_CHECK(!sessions.folder_has_sessions(), c.checkpoints.directory,
              " holds the sessions of an earlier server: continue them with --resume latest, or use another folder");
  }
  ServeMetrics metrics;
  ServeOptions serve_options;
  serve_options.learn = settings.learn;
  serve_options.max_batch_rows = settings.max_batch_rows;
  serve_options.checkpoint_every_steps = c.checkpoints.every_steps;
  serve_options.checkpoint_every_seconds = c.checkpoints.every_seconds;
  serve_options.group = m.grid.host_tp;
  ServeEngine engine(*m.model, *trainable, learner, sessions, c, serve_options, m.files.eos_ids, metrics);
  add_export_call(engine, sessions, *trainable, settings.http.base_model);

  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGTERM, on_serve_signal);
  std::signal(SIGINT, on_serve_signal);
  std::signal(SIGUSR1, on_serve_signal);  // what mpirun forwards to its ranks and then exits 0 on
  if (!m.grid.is_root()) {  // a TP rank behind rank 0: it follows rank 0's ticks, signals are rank 0's
    engine.run();
    return 0;
  }
  ServeContext context{engine, sessions, *trainable, *m.encoder, metrics, settings.http};
  const int rc = serve_http(engine, context, settings);
  if (rc == 0) log_info("stopped cleanly");
  return rc;
}

}  // namespace tlm
