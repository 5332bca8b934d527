#include "engine/model/model_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"

namespace tlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::optional<json> read_json_if_present(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream in(path);
  TLM_CHECK(in.good(), path.string(), ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    TLM_FAIL(path.string(), ": not valid JSON (", e.what(), ")");
  }
}

void add_eos(std::vector<int32_t>& ids, const json& value) {
  if (value.is_number_integer()) ids.push_back(value.get<int32_t>());
  if (value.is_array())
    for (const json& v : value)
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
}

void add_unique(std::vector<int32_t>& ids, std::optional<int32_t> id) {
  if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
}

ModelFiles open_gguf(const std::string& path) {
  ModelFiles m;
  m.path = path;
  m.format = "gguf";
  auto gguf = std::make_shared<const GgufFile>(path);
  m.config = ModelConfig::from_gguf(*gguf);
  m.weights = open_gguf_weights(gguf, m.config);
  m.tokenizer = load_tokenizer_from_gguf(*gguf);
  m.gguf = std::move(gguf);
  return m;
}

ModelFiles open_hf_directory(const std::string& path) {
  const fs::path dir(path);
  ModelFiles m;
  m.path = path;
  m.format = "hf";
  m.config = ModelConfig::from_hf_json((dir / "config.json").string());
  m.weights = open_safetensors_weights(path);
  m.tokenizer = load_tokenizer_from_directory(path);
  if (auto gen = read_json_if_present(dir / "generation_config.json")) {
    if (gen->contains("eos_token_id")) add_eos(m.eos_ids, gen->at("eos_token_id"));
  }
  return m;
}

}  // namespace

ModelFiles open_model_files(const std::string& path) {
  TLM_CHECK(fs::exists(path), path, ": no such file or directory (--model takes an HF model "
            "directory or a .gguf file)");
  ModelFiles m;
  if (fs::is_directory(path)) {
    TLM_CHECK(fs::exists(fs::path(path) / "config.json"), path,
              ": not an HF model directory (no config.json)");
    m = open_hf_directory(path);
  } else {
    m = open_gguf(path);
  }
  if (m.config.eos_token_id) add_unique(m.eos_ids, static_cast<int32_t>(*m.config.eos_token_id));
  add_unique(m.eos_ids, m.tokenizer->eos_id());
  if (!m.tokenizer->chat_template_text().empty()) m.chat_template_text = m.tokenizer->chat_template_text();
  return m;
}

ChatTemplate resolve_chat_template(const ModelFiles& model, const std::string& name) {
  if (name != "auto") return chat_template_by_name(name);
  if (model.chat_template_text) {
    if (auto t = chat_template_from_jinja(*model.chat_template_text)) return *t;
  }
  if (model.tokenizer->token_id("<|im_start|>")) return chat_template_by_name("chatml");
  // Gemma 3 GGUFs carry no template text; their vocabulary names the turn markers.
  if (model.tokenizer->token_id("<start_of_turn>") && model.config.model_type == "gemma3_text")
    return chat_template_by_name("gemma");
  return chat_template_by_name("raw");
}

}  // namespace tlm
