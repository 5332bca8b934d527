// The HTTP face of `tlm serve` (cpp-httplib): the OpenAI routes, /v1/models, /v1/adapters and
// export, /healthz and /metrics; bearer-key auth, body limits, and every error in OpenAI's
// error shape. Handlers parse, encode and hand requests to the engine thread; they never
// touch the model.
#pragma once

#include <cstdint>
#include <string>

#include "engine/serve/openai_api.h"

namespace httplib {
class Server;
}

namespace tlm {

class PromptEncoder;
class ServeEngine;
class ServeMetrics;
class SessionStore;
class TrainableSet;

struct HttpSettings {
  std::string api_key;            // empty: no auth
  size_t max_body_bytes = 1 << 20;
  int64_t max_prompt_tokens = 4096;
  ApiLimits limits;
  uint64_t default_seed = 0;
  std::string export_dir;         // POST /v1/adapters/<id>/export writes <export_dir>/<id>/
  std::string base_model;         // base_model_name_or_path in exported adapter_config.json
};

struct ServeContext {
  ServeEngine& engine;
  SessionStore& sessions;
  TrainableSet& trainable;
  const PromptEncoder& encoder;
  ServeMetrics& metrics;
  HttpSettings settings;
};

void install_routes(httplib::Server& server, ServeContext& context);

}  // namespace tlm
