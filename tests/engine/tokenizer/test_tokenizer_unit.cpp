// tokenizer.unit: the tokenizer pieces on tiny hand-written inputs. Every fixture is written
// to a fresh temporary directory by the test itself.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/merge_generation.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode_text.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// All fixtures live under one per-process directory, removed when the binary exits.
struct FixtureRoot {
  fs::path path = fs::temp_directory_path() / ("tlm-tok-unit-" + std::to_string(::getpid()));
  ~FixtureRoot() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

fs::path fresh_dir(const std::string& name) {
  static FixtureRoot root;
  static std::atomic<int> counter{0};
  fs::path dir = root.path / (name + "-" + std::to_string(counter++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A byte-level BPE over the full byte alphabet (ids 0..255 in GPT-2 byte order) plus a few
// merges and added tokens.
json byte_level_tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    tlm::utf8_append(ch, tlm::byte_to_unicode(static_cast<uint8_t>(b)));
    vocab[ch] = b;
  }
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  vocab["\xC4\xA0w"] = 260;  // "Ġw"
  json merges = json::array({"h e", "l l", "he ll", "hell o", "\xC4\xA0 w"});
  json added = json::array();
  auto add = [&](int id, const std::string& content, bool special, bool lstrip = false,
                 bool rstrip = false, bool single_word = false) {
    added.push_back({{"id", id}, {"content", content}, {"single_word", single_word},
                     {"lstrip", lstrip}, {"rstrip", rstrip}, {"normalized", false},
                     {"special", special}});
  };
  add(261, "<|im_start|>", true);
  add(262, "<|im_end|>", true);
  add(263, "<|im_start|>x", true);  // longer match wins at the same position
  add(264, "<mask>", true, true, true);
  add(265, "word", false, false, false, true);
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false},
                             {"trim_offsets", true}, {"use_regex", true}}},
          {"post_processor", {{"type", "TemplateProcessing"},
                              {"single", json::array({{{"SpecialToken", {{"id", "<|im_start|>"}, {"type_id", 0}}}},
                                                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                              {"pair", json::array()},
                              {"special_tokens", {{"<|im_start|>", {{"id", "<|im_start|>"}, {"ids", {261}}, {"tokens", {"<|im_start|>"}}}}}}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                     {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                     {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                     {"vocab", vocab}, {"merges", merges}}}};
}

std::unique_ptr<tlm::Tokenizer> load_json(const json& j, const std::string& name,
                                          const json* config = nullptr) {
  fs::path dir = fresh_dir(name);
  write(dir / "tokenizer.json", j.dump());
  if (config) write(dir / "tokenizer_config.json", config->dump());
  return tlm::load_tokenizer_from_directory(dir.string());
}

std::vector<int32_t> ids(std::initializer_list<int32_t> l) { return l; }

}  // namespace

TEST(Utf8, LossyUsesMaximalSubparts) {
  EXPECT_EQ(tlm::utf8_lossy("a\xE2\x82" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(tlm::utf8_lossy("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(tlm::utf8_lossy("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tlm::utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tlm::utf8_complete_prefix("ab\xF0\x9F"), 2u);
  EXPECT_EQ(tlm::utf8_complete_prefix("ab\xFF"), 3u);
  EXPECT_EQ(tlm::python_strip(" \t\xC2\xA0hi there\n\xE3\x80\x80"), "hi there");
  EXPECT_EQ(tlm::python_strip("   "), "");
}

TEST(ByteLevelBpe, MergesByRank) {
  auto tok = load_json(byte_level_tokenizer_json(), "bpe");
  // "hello" -> h e l l o -> he ll -> hell -> hello.
  EXPECT_EQ(tok->encode("hello", false), ids({259}));
  // " world": the space joins the word (GPT-2 regex) and Ġw is a merge.
  auto w = tok->encode(" world", false);
  ASSERT_FALSE(w.empty());
  EXPECT_EQ(w[0], 260);
  EXPECT_EQ(tok->decode(w, false), " world");
  EXPECT_EQ(tok->vocab_size(), 266);
  EXPECT_EQ(tok->token_id("hello"), 259);
  EXPECT_FALSE(tok->token_id("nope").has_value());
}

TEST(ByteLevelBpe, RoundTripsAnyUtf8) {
  auto tok = load_json(byte_level_tokenizer_json(), "roundtrip");
  for (std::string s : {"", "h", "héllo wörld", "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",
                        "tabs\t\tand\nnewlines  ", "\xE6\x9D\xB1\xE4\xBA\xAC 123"}) {
    EXPECT_EQ(tok->decode(tok->encode(s, false), false), s) << s;
  }
}

TEST(AddedTokens, SplitBeforePreTokenization) {
  auto tok = load_json(byte_level_tokenizer_json(), "special");
  auto v = tok->encode("<|im_start|>hello<|im_end|>", false);
  EXPECT_EQ(v, ids({261, 259, 262}));
  EXPECT_TRUE(tok->is_special(261));
  EXPECT_FALSE(tok->is_special(259));
  // Leftmost-longest: "<|im_start|>x" beats "<|im_start|>".
  EXPECT_EQ(tok->encode("<|im_start|>xhello", false), ids({263, 259}));
  // A partial special token is plain text.
  auto partial = tok->encode("<|im_sta", false);
  EXPECT_EQ(std::count(partial.begin(), partial.end(), 261), 0);
  // lstrip/rstrip swallow the surrounding whitespace.
  EXPECT_EQ(tok->encode("hello  <mask>  hello", false), ids({259, 264, 259}));
  // single_word: only a whole word matches.
  EXPECT_EQ(tok->encode("word", false), ids({265}));
  auto inside = tok->encode("swordy", false);
  EXPECT_EQ(std::count(inside.begin(), inside.end(), 265), 0);
  // Decoding writes special tokens unless asked to skip them.
  EXPECT_EQ(tok->decode(v, false), "<|im_start|>hello<|im_end|>");
  EXPECT_EQ(tok->decode(v, true), "hello");
  // The post-processor adds BOS only when asked.
  EXPECT_EQ(tok->encode("hello", true), ids({261, 259}));
}

TEST(StreamDecoder, HoldsSplitMultibyteCharacters) {
  auto tok = load_json(byte_level_tokenizer_json(), "stream");
  // "é" is two bytes and (no merge) two tokens; the first alone must not be emitted.
  auto e = tok->encode("\xC3\xA9", false);
  ASSERT_EQ(e.size(), 2u);
  tlm::Utf8StreamDecoder stream(*tok);
  EXPECT_EQ(stream.push(e[0]), "");
  EXPECT_EQ(stream.push(e[1]), "\xC3\xA9");
  // A four-byte emoji across four tokens, then text.
  auto emoji = tok->encode("\xF0\x9F\x98\x80!", false);
  ASSERT_EQ(emoji.size(), 5u);
  std::string out;
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(stream.push(emoji[i]), "");
  out += stream.push(emoji[3]);
  out += stream.push(emoji[4]);
  EXPECT_EQ(out, "\xF0\x9F\x98\x80!");
  // Special tokens are skipped by default; an incomplete tail becomes U+FFFD at flush.
  EXPECT_EQ(stream.push(262), "");
  EXPECT_EQ(stream.push(emoji[0]), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  tlm::Utf8StreamDecoder keep(*tok, false);
  EXPECT_EQ(keep.push(262), "<|im_end|>");
}

TEST(Bpe, TieBreakAndIgnoreMerges) {
  json j = byte_level_tokenizer_json();
  j["added_tokens"] = json::array();
  j["post_processor"] = nullptr;
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = nullptr;
  j["model"]["vocab"] = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  // "b c" has the better rank: abc -> a bc, and no "a bc" merge exists.
  j["model"]["merges"] = json::array({"b c", "a b", "ab c"});
  auto tok = load_json(j, "tie");
  EXPECT_EQ(tok->encode("abc", false), ids({0, 4}));
  // Without a decoder HF joins tokens with spaces.
  EXPECT_EQ(tok->decode({0, 4}, false), "a bc");
  j["model"]["ignore_merges"] = true;
  auto tok2 = load_json(j, "ignore");
  EXPECT_EQ(tok2->encode("abc", false), ids({5}));
  // Characters outside the vocabulary vanish without unk_token (so "a" and "b" still
  // merge), and become one fused unk with it.
  EXPECT_EQ(tok->encode("axb", false), ids({3}));
  j["model"]["vocab"]["<unk>"] = 6;
  j["model"]["unk_token"] = "<unk>";
  j["model"]["fuse_unk"] = true;
  auto tok3 = load_json(j, "unk");
  EXPECT_EQ(tok3->encode("axxb", false), ids({0, 6, 1}));
}

TEST(Bpe, GenerateMergesOrdersLikeTransformers) {
  std::vector<std::string> tokens = {"a", "b", "c", "ab", "bc", "abc"};
  std::unordered_map<std::string, int32_t> vocab;
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = static_cast<int32_t>(i);
  auto merges = tlm::generate_merges(tokens, vocab, nullptr);
  ASSERT_EQ(merges.size(), 4u);
  EXPECT_EQ(merges[0], std::make_pair(std::string("a"), std::string("b")));
  EXPECT_EQ(merges[1], std::make_pair(std::string("b"), std::string("c")));
  EXPECT_EQ(merges[2], std::make_pair(std::string("a"), std::string("bc")));
  EXPECT_EQ(merges[3], std::make_pair(std::string("ab"), std::string("c")));
  std::unordered_map<std::string, double> scores = {{"a", 0}, {"b", 0}, {"c", 0},
                                                    {"ab", -2}, {"bc", -1}, {"abc", -3}};
  auto by_score = tlm::generate_merges(tokens, vocab, &scores);
  EXPECT_EQ(by_score[0], std::make_pair(std::string("b"), std::string("c")));
  EXPECT_EQ(by_score[1], std::make_pair(std::string("a"), std::string("b")));
  // Equal scores: the longer left half first.
  EXPECT_EQ(by_score[2], std::make_pair(std::string("ab"), std::string("c")));
}

TEST(Errors, NameTheFileAndField) {
  json j = byte_level_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  try {
    load_json(j, "badpre");
    FAIL() << "expected an error";
  } catch (const tlm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json: pre_tokenizer"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("BertPreTokenizer"), std::string::npos);
  }
  j = byte_level_tokenizer_json();
  j["model"]["type"] = "WordPiece";
  EXPECT_THROW(load_json(j, "wordpiece"), tlm::Error);
  j = byte_level_tokenizer_json();
  j["model"]["merges"].push_back("q zz");
  try {
    load_json(j, "badmerge");
    FAIL() << "expected an error";
  } catch (const tlm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'zz' is not in the vocabulary"), std::string::npos);
  }
  j = byte_level_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}},
                        {"behavior", "Isolated"}, {"invert", false}};
  EXPECT_THROW(load_json(j, "badregex"), tlm::Error);
  EXPECT_THROW(tlm::load_tokenizer_from_directory(fresh_dir("empty").string()), tlm::Error);
  // Found by fuzz.tokenizer_files: a field of the wrong type escaped as nlohmann's type_error
  // (an uncaught exception: terminate) instead of an error naming the file.
  for (const json& bad : {json::array({{{"content", 5}}}), json::array({json::array()}),
                          json::array({{{"content", "<x>"}, {"special", "yes"}}})}) {
    j = byte_level_tokenizer_json();
    j["added_tokens"] = bad;
    try {
      load_json(j, "badadded");
      FAIL() << "expected an error for added_tokens " << bad.dump();
    } catch (const tlm::Error& e) {
      EXPECT_NE(std::string(e.what()).find("tokenizer.json: not a valid tokenizer.json"), std::string::npos) << e.what();
    }
  }
  // ... and a vocabulary id that is a float (2.8e113 there) was undefined behaviour in get<int32_t>.
  j = byte_level_tokenizer_json();
  j["model"]["vocab"]["A"] = 2.8e113;
  try {
    load_json(j, "floatid");
    FAIL() << "expected an error";
  } catch (const tlm::Error& e) {
    EXPECT_NE(std::string(e.what()).find(".vocab['A']: a token id must be an integer"), std::string::npos) << e.what();
  }
}

TEST(TokenizerConfig, SpecialTokensAndChatTemplate) {
  json config = {{"bos_token", "<|im_start|>"},
                 {"eos_token", {{"content", "<|im_end|>"}, {"special", true}}},
                 {"additional_special_tokens", {"hello"}},
                 {"chat_template", "{{ '<|im_start|>' }}"}};
  auto tok = load_json(byte_level_tokenizer_json(), "config", &config);
  EXPECT_EQ(tok->bos_id(), 261);
  EXPECT_EQ(tok->eos_id(), 262);
  EXPECT_FALSE(tok->pad_id().has_value());
  EXPECT_EQ(tok->chat_template_text(), "{{ '<|im_start|>' }}");
  // "hello" became a special added token (transformers registers named special tokens).
  EXPECT_TRUE(tok->is_special(259));
  EXPECT_EQ(tok->decode(tok->encode("hello", false), true), "");
}

TEST(ChatTemplates, NamesAndErrors) {
  EXPECT_EQ(tlm::chat_template_by_name("chatml").name(), "chatml");
  EXPECT_EQ(tlm::chat_template_by_name("llama3").bos_text, "<|begin_of_text|>");
  EXPECT_EQ(tlm::chat_template_by_name("llama2").end_of_turn(), "</s>");
  EXPECT_EQ(tlm::chat_template_by_name("raw").end_of_turn(), "");
  try {
    tlm::chat_template_by_name("vicuna");
    FAIL() << "expected an error";
  } catch (const tlm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("chatml, llama3, llama2, gemma, alpaca, raw"), std::string::npos);
  }
  std::vector<tlm::ChatMessage> chat = {{"user", "Hi"}};
  auto chatml = tlm::chat_template_from_jinja(
      "{% for m in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}{% endif %}{{ '<|im_start|>' }}"
      "{% endfor %}");
  ASSERT_TRUE(chatml.has_value());
  EXPECT_EQ(chatml->default_system, "Be brief.");
  EXPECT_EQ(chatml->render(chat, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  auto llama3 = tlm::chat_template_from_jinja("{{ '<|start_header_id|>' }}");
  ASSERT_TRUE(llama3.has_value());
  EXPECT_EQ(llama3->render({{"user", "  Hi \n"}}, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_FALSE(tlm::chat_template_from_jinja("{{ 'Cutting Knowledge Date' }}<|start_header_id|>"));
  EXPECT_FALSE(tlm::chat_template_from_jinja("{{ messages }}"));
  auto llama2 = tlm::chat_template_by_name("llama2");
  EXPECT_EQ(llama2.render({{"system", "S"}, {"user", "U"}, {"assistant", "A"}}, true),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s>");
  EXPECT_THROW(llama2.render({{"assistant", "A"}}, true), tlm::Error);
}
