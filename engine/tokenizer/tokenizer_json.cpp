#include "engine/tokenizer/json_token_id.h"
#include "engine/tokenizer/tokenizer_json.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/tokenizer/tokenizer_config.h"

namespace tlm {

namespace {

std::unique_ptr<BpeModel> parse_bpe_model(const nlohmann::json& model, const std::string& path,
                                          bool as_llama_tokenizer) {
  const std::string where = path + ": model";
  TLM_CHECK(model.is_object(), where, ": expected an object");
  const std::string type = model.value("type", std::string("BPE"));
  TLM_CHECK(type == "BPE", where, ".type: model type \"", type,
            "\" is not supported (only BPE)");
  if (model.contains("dropout") && !model.at("dropout").is_null()) {
    const double dropout = model.at("dropout").get<double>();
    TLM_CHECK(dropout == 0.0, where, ".dropout: BPE dropout ", dropout,
              " makes encoding random; only 0/null is supported");
  }
  const auto& vocab_json = model.at("vocab");
  TLM_CHECK(vocab_json.is_object(), where, ".vocab: expected an object token -> id");
  std::vector<std::pair<std::string, int32_t>> vocab;
  vocab.reserve(vocab_json.size());
  for (const auto& item : vocab_json.items()) {
    vocab.emplace_back(item.key(), json_token_id(item.value(), str_cat(where, ".vocab['", item.key(), "']")));
  }
  std::vector<std::pair<std::string, std::string>> merges;
  const auto& merges_json = model.at("merges");
  TLM_CHECK(merges_json.is_array(), where, ".merges: expected a list");
  merges.reserve(merges_json.size());
  for (size_t i = 0; i < merges_json.size(); ++i) {
    const auto& m = merges_json[i];
    if (m.is_string()) {
      const std::string line = m.get<std::string>();
      if (line.rfind("#version", 0) == 0) continue;
      const size_t space = line.find(' ');
      TLM_CHECK(space != std::string::npos && line.find(' ', space + 1) == std::string::npos,
                where, ".merges[", i, "]: expected \"a b\", got \"", line, "\"");
      merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else {
      TLM_CHECK(m.is_array() && m.size() == 2, where, ".merges[", i, "]: expected [a, b]");
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    }
  }
  BpeOptions options;
  auto optional_string = [&](const char* key) -> std::optional<std::string> {
    if (!model.contains(key) || model.at(key).is_null()) return std::nullopt;
    return model.at(key).get<std::string>();
  };
  options.unk_token = optional_string("unk_token");
  options.continuing_subword_prefix = optional_string("continuing_subword_prefix").value_or("");
  options.end_of_word_suffix = optional_string("end_of_word_suffix").value_or("");
  auto flag = [&](const char* key) {
    return model.contains(key) && model.at(key).is_boolean() && model.at(key).get<bool>();
  };
  options.fuse_unk = flag("fuse_unk");
  options.byte_fallback = flag("byte_fallback");
  options.ignore_merges = flag("ignore_merges");
  if (as_llama_tokenizer) {
    options = BpeOptions{};
    options.fuse_unk = true;
    options.byte_fallback = true;
  }
  return std::make_unique<BpeModel>(vocab, merges, options, path);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TLM_CHECK(in.good(), path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

namespace {

HfTokenizerParts parse_tokenizer_document(const std::string& path, bool as_llama_tokenizer,
                                          const TokenizerConfig& config) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    TLM_FAIL(path, ": invalid JSON: ", e.what());
  }
  TLM_CHECK(j.is_object() && j.contains("model"), path, ": not a tokenizer.json (no \"model\")");

  HfTokenizerParts parts;
  parts.source = path;
  auto field = [&](const char* key) -> const nlohmann::json& {
    static const nlohmann::json null_value;
    return j.contains(key) ? j.at(key) : null_value;
  };
  parts.model = parse_bpe_model(j.at("model"), path, as_llama_tokenizer);
  parts.post = parse_post_processor(field("post_processor"), path + ": post_processor");
  if (as_llama_tokenizer) {
    const bool add_prefix_space = config.add_prefix_space.value_or(true);
    const PrependScheme scheme = !add_prefix_space           ? PrependScheme::Never
                                 : config.legacy.value_or(false) ? PrependScheme::Always
                                                                 : PrependScheme::First;
    parts.pre_tokenizer = make_metaspace_pre_tokenizer("\xE2\x96\x81", scheme, false);
    parts.decoder = make_sentencepiece_decoder(add_prefix_space);
    for (const char* name : {"<unk>", "<s>", "</s>"}) {
      if (!parts.model->token_to_id(name)) continue;
      AddedToken t;
      t.content = name;
      t.special = true;
      parts.added.add(t, *parts.model);
    }
  } else {
    parts.normalizer = parse_normalizer(field("normalizer"), path + ": normalizer");
    parts.pre_tokenizer = parse_pre_tokenizer(field("pre_tokenizer"), path + ": pre_tokenizer");
    parts.decoder = parse_decoder(field("decoder"), path + ": decoder");
  }

  const auto& added = field("added_tokens");
  if (added.is_array()) {
    for (size_t i = 0; i < added.size(); ++i) {
      const auto& t = added[i];
      AddedToken token;
      token.content = t.at("content").get<std::string>();
      token.single_word = t.value("single_word", false);
      token.lstrip = t.value("lstrip", false);
      token.rstrip = t.value("rstrip", false);
      token.normalized = t.value("normalized", true);
      token.special = t.value("special", false);
      // HF re-derives the id (model vocabulary or next free one) rather than trusting "id".
      parts.added.add(token, *parts.model);
    }
  }
  return parts;
}

}  // namespace

// A field of the wrong type or a missing one (nlohmann's type_error / out_of_range, found by
// fuzz.tokenizer_files as an uncaught exception) is an error naming the file.
HfTokenizerParts parse_tokenizer_json(const std::string& path, bool as_llama_tokenizer,
                                      const TokenizerConfig& config) {
  try {
    return parse_tokenizer_document(path, as_llama_tokenizer, config);
  } catch (const nlohmann::json::exception& e) {
    TLM_FAIL(path, ": not a valid tokenizer.json: ", e.what());
  }
}

std::unique_ptr<Tokenizer> load_tokenizer_from_directory(const std::string& directory) {
  namespace fs = std::filesystem;
  TLM_CHECK(fs::is_directory(directory), directory, ": not a directory");
  const TokenizerConfig config = read_tokenizer_config(directory);
  const fs::path json_path = fs::path(directory) / "tokenizer.json";
  const fs::path model_path = fs::path(directory) / "tokenizer.model";
  HfTokenizerParts parts;
  if (fs::exists(json_path)) {
    // transformers rebuilds LlamaTokenizer's own pipeline around a SentencePiece-style file
    // and keeps byte-level files (Llama-3 style) as they are; it tells them apart by this
    // very substring test.
    const std::string cls = config.tokenizer_class.value_or("");
    const bool llama_class = cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast";
    const bool as_llama =
        llama_class && read_text(json_path.string()).find("\"ByteLevel\"") == std::string::npos;
    parts = parse_tokenizer_json(json_path.string(), as_llama, config);
  } else if (fs::exists(model_path)) {
    parts = parse_sentencepiece_model(model_path.string(), config);
  } else {
    TLM_FAIL(directory, ": has neither tokenizer.json nor tokenizer.model");
  }
  apply_tokenizer_config(config, fs::exists(json_path), parts);
  return std::make_unique<HfTokenizer>(std::move(parts));
}

}  // namespace tlm
