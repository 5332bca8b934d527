#include "launch/model_options.h"

#include <chrono>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include "engine/common/log.h"

#include "dist/communicator.h"
#include "engine/common/error.h"

#ifndef TLM_DEFAULT_MODEL
#define TLM_DEFAULT_MODEL ""
#endif

namespace tlm {

void add_model_options(cxxopts::Options& options, int64_t default_cutoff_len) {
  options.add_options("Model")
      ("model", "HF model directory or .gguf file (default: the embedded SmolLM2-135M-Instruct)",
       cxxopts::value<std::string>()->default_value(TLM_DEFAULT_MODEL))
      ("dtype", "compute dtype: fp32 or bf16", cxxopts::value<std::string>()->default_value("fp32"))
      ("chat-template", "auto (from the model), chatml, llama3, llama2, alpaca or raw",
       cxxopts::value<std::string>()->default_value("auto"))
      ("cutoff-len", "prompt tokens kept (the rest is cut, as the official TLM code does); 0 = all",
       cxxopts::value<int64_t>()->default_value(std::to_string(default_cutoff_len)))
      ("threads", "intra-op threads (0 = all cores)", cxxopts::value<int>()->default_value("0"));
}

ModelOptions read_model_options(const cxxopts::ParseResult& parsed) {
  ModelOptions o;
  o.model = parsed["model"].as<std::string>();
  o.dtype = parsed["dtype"].as<std::string>();
  o.chat_template = parsed["chat-template"].as<std::string>();
  o.cutoff_len = parsed["cutoff-len"].as<int64_t>();
  o.threads = parsed["threads"].as<int>();
  TLM_CHECK(!o.model.empty(), "--model is required (no default model was configured at build time)");
  TLM_CHECK(o.dtype == "fp32" || o.dtype == "bf16", "--dtype must be fp32 or bf16, got '", o.dtype, "'");
  return o;
}

LoadedModel load_model(const ModelOptions& options) {
  if (options.threads > 0) at::set_num_threads(options.threads);
  const auto start = std::chrono::steady_clock::now();
  LoadedModel m;
  m.files = open_model_files(options.model);
  const at::ScalarType dtype = options.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  m.model = std::make_unique<LlamaModel>(m.files.config, *m.files.weights,
                                         make_single_process_communicator(), dtype);
  ChatTemplate chat = resolve_chat_template(m.files, options.chat_template);
  if (int32_t eot = -1; !chat.end_of_turn().empty()) {
    if (auto id = m.files.tokenizer->token_id(chat.end_of_turn())) eot = *id;
    if (eot >= 0 && std::find(m.files.eos_ids.begin(), m.files.eos_ids.end(), eot) == m.files.eos_ids.end())
      m.files.eos_ids.push_back(eot);
  }
  m.encoder = std::make_unique<PromptEncoder>(*m.files.tokenizer, chat, options.cutoff_len);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log_info(str_cat("model ", options.model, " (", m.files.format, "): ", m.files.config.summary(),
                   "; ", chat.name(), " chat template; loaded in ", fixed(secs, 2), " s"));
  return m;
}

}  // namespace tlm
