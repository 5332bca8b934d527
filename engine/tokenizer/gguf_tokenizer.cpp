// GGUF vocabularies (tokenizer.ggml.*), assembled the way transformers' GGUF integration
// (integrations/gguf/gguf_tokenizer_mapping.py) builds them, so that encodings equal
// AutoTokenizer.from_pretrained(dir, gguf_file=name):
//  - "gpt2": GPT2Tokenizer (byte-level BPE, GPT-2 regex) with the file's merges; tokens
//    outside the byte alphabet are respelled byte-level; tokenizer.ggml.pre picks a Split
//    regex for the pre-tokenizers transformers knows (llama3, qwen2, ...), others keep GPT-2's.
//  - "llama": LlamaTokenizer (SentencePiece-style BPE, byte fallback, Metaspace) with merges
//    from the file or regenerated from the scores.
// Control tokens (type 3) become special added tokens, user-defined ones (type 4) plain
// added tokens. BOS is added when tokenizer.ggml.add_bos_token says so ("llama": default on).
#include <map>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/formats/gguf_file.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/merge_generation.h"
#include "engine/tokenizer/sentencepiece_vocab.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

namespace {

constexpr const char* kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kTekkenSplit =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kGpt4oSplit =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// tokenizer.ggml.pre values transformers maps to a Split regex; any other value keeps the
// builder's own pre-tokenizer (GPT-2's regex for "gpt2" vocabularies).
const char* split_regex_for(const std::string& pre) {
  static const std::unordered_map<std::string, const char*> table = {
      {"llama3", kLlama3Split},     {"llama-v3", kLlama3Split},  {"llama-bpe", kLlama3Split},
      {"falcon3", kLlama3Split},    {"falcon-h1", kLlama3Split}, {"pixtral", kLlama3Split},
      {"midm-2.0", kLlama3Split},   {"lfm2", kLlama3Split},      {"jina-v5-nano", kLlama3Split},
      {"dbrx", kLlama3Split},       {"smaug-bpe", kLlama3Split}, {"tekken", kTekkenSplit},
      {"qwen2", kQwen2Split},       {"deepseek-r1-qwen", kQwen2Split},
      {"kormo", kQwen2Split},       {"f2llmv2", kQwen2Split},    {"megrez", kQwen2Split},
      {"gpt-4o", kGpt4oSplit},      {"llama4", kGpt4oSplit},     {"kanana2", kGpt4oSplit},
      {"talkie", kGpt4oSplit},      {"minimax-m2", kGpt4oSplit},
  };
  auto it = table.find(pre);
  return it == table.end() ? nullptr : it->second;
}

bool in_byte_alphabet(const std::string& token) {
  size_t pos = 0;
  while (pos < token.size()) {
    if (unicode_to_byte(utf8_decode_at(token, pos)) < 0) return false;
  }
  return true;
}

std::optional<int32_t> optional_id(const GgufFile& gguf, const std::string& key, size_t n_tokens) {
  if (!gguf.has(key)) return std::nullopt;
  const int64_t id = gguf.get_int(key);
  TLM_CHECK(id >= 0 && static_cast<size_t>(id) < n_tokens, gguf.path(), ": metadata key '", key,
            "' = ", id, " is outside the vocabulary (", n_tokens, " tokens)");
  return static_cast<int32_t>(id);
}

std::vector<std::pair<std::string, std::string>> read_merges(const GgufFile& gguf) {
  std::vector<std::pair<std::string, std::string>> merges;
  const auto& lines = gguf.get_string_array("tokenizer.ggml.merges");
  merges.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    const size_t space = line.find(' ');
    TLM_CHECK(space != std::string::npos && line.find(' ', space + 1) == std::string::npos,
              gguf.path(), ": tokenizer.ggml.merges[", i, "] is not \"a b\": \"", line, "\"");
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return merges;
}

HfTokenizerParts build_gpt2(const GgufFile& gguf, const std::vector<std::string>& tokens,
                            const std::vector<int64_t>& types) {
  const std::string path = gguf.path();
  TLM_CHECK(gguf.has("tokenizer.ggml.merges"), path,
            ": metadata key 'tokenizer.ggml.merges' missing (needed by a gpt2 vocabulary)");
  std::vector<std::pair<std::string, int32_t>> vocab;
  vocab.reserve(tokens.size());
  std::set<std::string> keys;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    std::string key = in_byte_alphabet(t) ? t : bytes_to_byte_level(t);
    keys.insert(key);
    vocab.emplace_back(std::move(key), static_cast<int32_t>(i));
  }
  HfTokenizerParts parts;
  parts.source = path;
  parts.model = std::make_unique<BpeModel>(vocab, read_merges(gguf), BpeOptions{}, path);
  parts.pre_tokenizer = make_byte_level_pre_tokenizer(false, true);
  parts.decoder = make_byte_level_decoder();
  for (size_t i = 0; i < types.size() && i < tokens.size(); ++i) {
    // Control tokens spelled outside the byte alphabet are llama.cpp mislabels HF skips.
    if (types[i] != kSpControl || !in_byte_alphabet(tokens[i])) continue;
    AddedToken t;
    t.content = tokens[i];
    t.special = true;
    parts.added.add(t, *parts.model);
  }
  for (size_t i = 0; i < types.size() && i < tokens.size(); ++i) {
    if (types[i] != kSpUserDefined || !keys.count(tokens[i])) continue;
    AddedToken t;
    t.content = tokens[i];
    parts.added.add(t, *parts.model);
  }
  return parts;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GgufFile& gguf) {
  const std::string path = gguf.path();
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  const auto& tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  TLM_CHECK(!tokens.empty(), path, ": tokenizer.ggml.tokens is empty");
  std::vector<int64_t> types;
  if (gguf.has("tokenizer.ggml.token_type")) {
    types = gguf.get_int_array("tokenizer.ggml.token_type");
    TLM_CHECK(types.size() == tokens.size(), path, ": tokenizer.ggml.token_type has ",
              types.size(), " entries for ", tokens.size(), " tokens");
  }

  HfTokenizerParts parts;
  bool add_bos_default = false;
  bool gemma = false;
  if (model == "gpt2") {
    parts = build_gpt2(gguf, tokens, types);
  } else if (model == "llama") {
    const std::string arch = gguf.get_string_or("general.architecture", "");
    TLM_CHECK(arch != "gemma" && arch != "gemma2" && arch != "phi3", path,
              ": general.architecture '", arch, "' with a llama (SentencePiece) vocabulary needs "
              "transformers' architecture-specific tokenizer, which tlm does not implement");
    // Gemma 3's SentencePiece model adds no dummy prefix (tokenizer.ggml.add_space_prefix false).
    gemma = arch == "gemma3";
    SentencePieceVocab vocab;
    vocab.pieces = tokens;
    vocab.types.assign(types.begin(), types.end());
    if (gguf.has("tokenizer.ggml.merges")) {
      vocab.merges = read_merges(gguf);
    } else {
      TLM_CHECK(gguf.has("tokenizer.ggml.scores"), path,
                ": a llama vocabulary needs tokenizer.ggml.merges or tokenizer.ggml.scores");
      vocab.scores = gguf.get_float_array("tokenizer.ggml.scores");
    }
    // transformers ignores tokenizer.ggml.add_space_prefix: LlamaTokenizer's defaults apply.
    parts = build_sentencepiece_parts(path, vocab, !gemma, false);
    add_bos_default = true;
  } else {
    TLM_FAIL(path, ": tokenizer.ggml.model '", model,
             "' is not supported (supported: gpt2, llama)");
  }

  if (const char* split = split_regex_for(gguf.get_string_or("tokenizer.ggml.pre", ""))) {
    std::vector<std::unique_ptr<PreTokenizer>> seq;
    seq.push_back(make_split_pre_tokenizer(split, SplitBehavior::Isolated,
                                           path + ": tokenizer.ggml.pre"));
    seq.push_back(make_byte_level_pre_tokenizer(false, false));
    parts.pre_tokenizer = make_sequence_pre_tokenizer(std::move(seq));
  }

  // transformers registers the tokens these ids name as special tokens.
  const auto bos = optional_id(gguf, "tokenizer.ggml.bos_token_id", tokens.size());
  const auto eos = optional_id(gguf, "tokenizer.ggml.eos_token_id", tokens.size());
  const auto unk = optional_id(gguf, "tokenizer.ggml.unknown_token_id", tokens.size());
  const auto pad = optional_id(gguf, "tokenizer.ggml.padding_token_id", tokens.size());
  for (const auto& id : {bos, eos, unk, pad}) {
    if (!id) continue;
    const std::string& text = tokens[static_cast<size_t>(*id)];
    if (text.empty() || parts.added.token_to_id(text) || !parts.model->token_to_id(text)) continue;
    AddedToken t;
    t.content = text;
    t.special = true;
    parts.added.add(t, *parts.model);
  }
  parts.bos = bos;
  parts.eos = eos;
  parts.pad = pad;
  parts.post = PostProcessor{};
  if (gguf.get_bool_or("tokenizer.ggml.add_bos_token", add_bos_default) && bos) {
    parts.post.prefix.push_back(*bos);
  }
  if (gguf.get_bool_or("tokenizer.ggml.add_eos_token", false) && eos) {
    parts.post.suffix.push_back(*eos);
  }
  parts.chat_template = gguf.get_string_or("tokenizer.chat_template", "");
  return std::make_unique<HfTokenizer>(std::move(parts));
}

namespace {

nlohmann::json added_token_json(int64_t id, const std::string& content, bool special) {
  return {{"id", id},           {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},    {"normalized", !special}, {"special", special}};
}

nlohmann::json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

}  // namespace

// Gemma 3's SentencePiece-style vocabulary as tokenizer.json: spaces become U+2581 (no dummy
// prefix), BPE with byte fallback over merges regenerated from the scores, control pieces
// special added tokens and user-defined ones plain added tokens matched in the raw text (as
// load_tokenizer_from_gguf builds it).
namespace {

nlohmann::json gemma_tokenizer_json(const GgufFile& gguf, const std::vector<std::string>& tokens,
                                    const std::vector<int64_t>& types, std::optional<int32_t> bos) {
  const std::string path = gguf.path();
  TLM_CHECK(gguf.has("tokenizer.ggml.scores"), path, ": a Gemma vocabulary needs tokenizer.ggml.scores");
  const std::vector<double> scores = gguf.get_float_array("tokenizer.ggml.scores");
  TLM_CHECK(scores.size() == tokens.size(), path, ": ", scores.size(), " scores for ", tokens.size(), " tokens");
  std::unordered_map<std::string, int32_t> ids;
  std::unordered_map<std::string, double> score_of;
  std::vector<std::string> order;
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!ids.count(tokens[i])) order.push_back(tokens[i]);
    ids[tokens[i]] = static_cast<int32_t>(i);
    score_of[tokens[i]] = scores[i];
    vocab[tokens[i]] = static_cast<int64_t>(i);
  }
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [a, b] : generate_merges(order, ids, &score_of)) merges.push_back({a, b});
  nlohmann::json added = nlohmann::json::array();
  for (size_t i = 0; i < types.size(); ++i) {
    if ((types[i] != kSpControl && types[i] != kSpUserDefined) || tokens[i].empty()) continue;
    nlohmann::json t = added_token_json(static_cast<int64_t>(i), tokens[i], types[i] == kSpControl);
    t["normalized"] = false;
    added.push_back(t);
  }
  nlohmann::json post = nullptr;
  if (gguf.get_bool_or("tokenizer.ggml.add_bos_token", true) && bos) {
    const std::string& b = tokens[static_cast<size_t>(*bos)];
    post = {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{b, {{"id", b}, {"ids", {*bos}}, {"tokens", {b}}}}}}};
  }
  const std::string space = "\xE2\x96\x81";
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}}},
          {"pre_tokenizer", nullptr},
          {"post_processor", post},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}}}}}},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
            {"vocab", vocab}, {"merges", merges}}}};
}

GgufTokenizerFiles gemma_tokenizer_files(const GgufFile& gguf) {
  const std::string path = gguf.path();
  const auto& tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  const std::vector<int64_t> types = gguf.get_int_array("tokenizer.ggml.token_type");
  TLM_CHECK(types.size() == tokens.size(), path, ": tokenizer.ggml.token_type has ", types.size(), " entries for ",
            tokens.size(), " tokens");
  const auto bos = optional_id(gguf, "tokenizer.ggml.bos_token_id", tokens.size());
  const auto eos = optional_id(gguf, "tokenizer.ggml.eos_token_id", tokens.size());
  const auto unk = optional_id(gguf, "tokenizer.ggml.unknown_token_id", tokens.size());
  const auto pad = optional_id(gguf, "tokenizer.ggml.padding_token_id", tokens.size());
  GgufTokenizerFiles files;
  files.tokenizer = gemma_tokenizer_json(gguf, tokens, types, bos);
  auto name = [&](const std::optional<int32_t>& id) -> nlohmann::json {
    return id ? nlohmann::json(tokens[static_cast<size_t>(*id)]) : nlohmann::json(nullptr);
  };
  files.tokenizer_config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                            {"add_bos_token", gguf.get_bool_or("tokenizer.ggml.add_bos_token", true)},
                            {"add_eos_token", false},
                            {"clean_up_tokenization_spaces", false},
                            {"bos_token", name(bos)},
                            {"eos_token", name(eos)},
                            {"unk_token", name(unk)},
                            {"pad_token", name(pad)}};
  return files;
}

}  // namespace

// The same vocabulary as load_tokenizer_from_gguf builds, as HF files: byte-level BPE ("gpt2")
// and Gemma 3's SentencePiece-style one; other "llama" vocabularies would need LlamaTokenizer's
// pipeline written out.
GgufTokenizerFiles hf_tokenizer_files_from_gguf(const GgufFile& gguf) {
  const std::string path = gguf.path();
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  const bool gemma = model == "llama" && gguf.get_string_or("general.architecture", "") == "gemma3";
  TLM_CHECK(model == "gpt2" || gemma, path, ": tokenizer.ggml.model '", model,
            "': only byte-level BPE (gpt2) and Gemma 3 vocabularies can be written as tokenizer.json yet");
  if (gemma) return gemma_tokenizer_files(gguf);
  const auto& tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  std::vector<int64_t> types;
  if (gguf.has("tokenizer.ggml.token_type")) types = gguf.get_int_array("tokenizer.ggml.token_type");
  TLM_CHECK(types.empty() || types.size() == tokens.size(), path, ": tokenizer.ggml.token_type has ", types.size(),
            " entries for ", tokens.size(), " tokens");
  nlohmann::json vocab = nlohmann::json::object();
  std::set<std::string> keys;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string key = in_byte_alphabet(tokens[i]) ? tokens[i] : bytes_to_byte_level(tokens[i]);
    keys.insert(key);
    vocab[key] = static_cast<int64_t>(i);
  }
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [a, b] : read_merges(gguf)) merges.push_back({a, b});
  // Added tokens as build_gpt2 and the special ids add them, in id order.
  std::map<int64_t, nlohmann::json> added;
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i] == kSpControl && in_byte_alphabet(tokens[i])) added[static_cast<int64_t>(i)] = added_token_json(static_cast<int64_t>(i), tokens[i], true);
    else if (types[i] == kSpUserDefined && keys.count(tokens[i])) added[static_cast<int64_t>(i)] = added_token_json(static_cast<int64_t>(i), tokens[i], false);
  }
  GgufTokenizerFiles files;
  const auto bos = optional_id(gguf, "tokenizer.ggml.bos_token_id", tokens.size());
  const auto eos = optional_id(gguf, "tokenizer.ggml.eos_token_id", tokens.size());
  const auto unk = optional_id(gguf, "tokenizer.ggml.unknown_token_id", tokens.size());
  const auto pad = optional_id(gguf, "tokenizer.ggml.padding_token_id", tokens.size());
  for (const auto& id : {bos, eos, unk, pad}) {
    if (id && !tokens[static_cast<size_t>(*id)].empty() && !added.count(*id) && vocab.contains(tokens[static_cast<size_t>(*id)]))
      added[*id] = added_token_json(*id, tokens[static_cast<size_t>(*id)], true);
  }
  nlohmann::json added_list = nlohmann::json::array();
  for (const auto& [id, t] : added) added_list.push_back(t);

  nlohmann::json pre = byte_level(true);
  if (const char* split = split_regex_for(gguf.get_string_or("tokenizer.ggml.pre", ""))) {
    pre = {{"type", "Sequence"},
           {"pretokenizers",
            {{{"type", "Split"}, {"pattern", {{"Regex", split}}}, {"behavior", "Isolated"}, {"invert", false}},
             byte_level(false)}}};
  }
  const bool add_bos = gguf.get_bool_or("tokenizer.ggml.add_bos_token", false) && bos;
  const bool add_eos = gguf.get_bool_or("tokenizer.ggml.add_eos_token", false) && eos;
  nlohmann::json post = byte_level(true);
  if (add_bos || add_eos) {
    nlohmann::json single = nlohmann::json::array(), pair = nlohmann::json::array(), special = nlohmann::json::object();
    auto piece = [&](int32_t id) {
      const std::string& t = tokens[static_cast<size_t>(id)];
      special[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
      return nlohmann::json{{"SpecialToken", {{"id", t}, {"type_id", 0}}}};
    };
    if (add_bos) single.push_back(piece(*bos));
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (add_eos) single.push_back(piece(*eos));
    pair = single;
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    post = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", special}};
  }
  files.tokenizer = {{"version", "1.0"},
                     {"truncation", nullptr},
                     {"padding", nullptr},
                     {"added_tokens", added_list},
                     {"normalizer", nullptr},
                     {"pre_tokenizer", pre},
                     {"post_processor", post},
                     {"decoder", byte_level(true)},
                     {"model",
                      {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                       {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}, {"fuse_unk", false},
                       {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}}}};
  nlohmann::json& cfg = files.tokenizer_config;
  cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"add_bos_token", add_bos}, {"add_eos_token", add_eos},
         {"clean_up_tokenization_spaces", false}};
  auto name = [&](const std::optional<int32_t>& id) -> nlohmann::json {
    return id ? nlohmann::json(tokens[static_cast<size_t>(*id)]) : nlohmann::json(nullptr);
  };
  cfg["bos_token"] = name(bos);
  cfg["eos_token"] = name(eos);
  cfg["unk_token"] = name(unk);
  cfg["pad_token"] = name(pad);
  const std::string chat = gguf.get_string_or("tokenizer.chat_template", "");
  if (!chat.empty()) cfg["chat_template"] = chat;
  return files;
}

}  // namespace tlm
