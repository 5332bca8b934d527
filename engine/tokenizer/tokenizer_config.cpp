#include "engine/tokenizer/tokenizer_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"

namespace tlm {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TLM_CHECK(in.good(), path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A special token is written as "text" or as {"content": "text", ...}.
std::optional<std::string> token_text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value.at("content").is_string()) {
    return value.at("content").get<std::string>();
  }
  return std::nullopt;
}

std::optional<bool> optional_bool(const nlohmann::json& config, const char* key,
                                  const std::string& path) {
  if (!config.contains(key) || config.at(key).is_null()) return std::nullopt;
  TLM_CHECK(config.at(key).is_boolean(), path, ": field \"", key, "\" is not a boolean");
  return config.at(key).get<bool>();
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& directory) {
  namespace fs = std::filesystem;
  TokenizerConfig cfg;
  const fs::path config_path = fs::path(directory) / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    cfg.path = config_path.string();
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(read_file(cfg.path));
    } catch (const nlohmann::json::exception& e) {
      TLM_FAIL(cfg.path, ": invalid JSON: ", e.what());
    }
    TLM_CHECK(config.is_object(), cfg.path, ": expected a JSON object");
    cfg.add_bos_token = optional_bool(config, "add_bos_token", cfg.path);
    cfg.add_eos_token = optional_bool(config, "add_eos_token", cfg.path);
    cfg.add_prefix_space = optional_bool(config, "add_prefix_space", cfg.path);
    cfg.legacy = optional_bool(config, "legacy", cfg.path);
    if (config.contains("tokenizer_class") && config.at("tokenizer_class").is_string()) {
      cfg.tokenizer_class = config.at("tokenizer_class").get<std::string>();
    }
    auto named = [&](const char* key) -> std::optional<std::string> {
      if (!config.contains(key)) return std::nullopt;
      auto text = token_text(config.at(key));
      if (text) cfg.special_tokens.push_back(*text);
      return text;
    };
    cfg.bos_token = named("bos_token");
    cfg.eos_token = named("eos_token");
    cfg.unk_token = named("unk_token");
    cfg.pad_token = named("pad_token");
    for (const char* key : {"sep_token", "cls_token", "mask_token"}) named(key);
    for (const char* key : {"additional_special_tokens", "extra_special_tokens"}) {
      if (!config.contains(key)) continue;
      const auto& list = config.at(key);
      if (list.is_array()) {
        for (const auto& item : list) {
          if (auto text = token_text(item)) cfg.special_tokens.push_back(*text);
        }
      } else if (list.is_object()) {
        for (const auto& item : list.items()) {
          if (auto text = token_text(item.value())) cfg.special_tokens.push_back(*text);
        }
      }
    }
    if (config.contains("added_tokens_decoder") && config.at("added_tokens_decoder").is_object()) {
      for (const auto& item : config.at("added_tokens_decoder").items()) {
        const auto& v = item.value();
        AddedToken token;
        token.content = v.at("content").get<std::string>();
        token.single_word = v.value("single_word", false);
        token.lstrip = v.value("lstrip", false);
        token.rstrip = v.value("rstrip", false);
        token.normalized = v.value("normalized", false);
        token.special = v.value("special", false);
        int32_t id = 0;
        try {
          id = std::stoi(item.key());
        } catch (const std::exception&) {
          TLM_FAIL(cfg.path, ": added_tokens_decoder key '", item.key(), "' is not an id");
        }
        cfg.added_tokens_decoder.emplace_back(id, token);
      }
    }
    if (config.contains("chat_template")) {
      const auto& ct = config.at("chat_template");
      if (ct.is_string()) {
        cfg.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {
        // Named templates: the "default" one, else the first.
        for (const auto& entry : ct) {
          if (entry.value("name", std::string()) == "default" || cfg.chat_template.empty()) {
            cfg.chat_template = entry.value("template", std::string());
          }
        }
      }
    }
  }
  const fs::path jinja_path = fs::path(directory) / "chat_template.jinja";
  if (fs::exists(jinja_path)) cfg.chat_template = read_file(jinja_path.string());
  return cfg;
}

void apply_tokenizer_config(const TokenizerConfig& config, bool has_tokenizer_json,
                            HfTokenizerParts& parts) {
  for (const auto& [id, token] : config.added_tokens_decoder) {
    if (!parts.added.token_to_id(token.content)) parts.added.add(token, *parts.model);
  }
  for (const auto& text : config.special_tokens) {
    if (parts.added.token_to_id(text)) continue;
    AddedToken token;
    token.content = text;
    token.special = true;
    parts.added.add(token, *parts.model);
  }
  auto id_of = [&](const std::optional<std::string>& text) -> std::optional<int32_t> {
    if (!text) return std::nullopt;
    if (auto id = parts.added.token_to_id(*text)) return id;
    return parts.model->token_to_id(*text);
  };
  if (config.bos_token) parts.bos = id_of(config.bos_token);
  if (config.eos_token) parts.eos = id_of(config.eos_token);
  if (config.pad_token) parts.pad = id_of(config.pad_token);
  if (!has_tokenizer_json) {
    parts.post = PostProcessor{};
    if (config.add_bos_token.value_or(false) && parts.bos) parts.post.prefix.push_back(*parts.bos);
    if (config.add_eos_token.value_or(false) && parts.eos) parts.post.suffix.push_back(*parts.eos);
  }
  if (!config.chat_template.empty()) parts.chat_template = config.chat_template;
}

}  // namespace tlm
