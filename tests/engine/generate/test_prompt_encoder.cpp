// PromptEncoder: the user turn goes through the chat template with the generation prompt,
// BOS is added by the tokenizer only for the raw template, and cutoff_len keeps the first
// tokens. A byte tokenizer (one id per byte, BOS = 256) makes every id checkable.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "engine/generate/prompt_encoder.h"

namespace tlm {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(kBos);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids, bool) const override {
    std::string s;
    for (int32_t id : ids)
      if (id < 256) s += static_cast<char>(id);
    return s;
  }
  std::string token_bytes(int32_t id) const override {
    return id < 256 ? std::string(1, static_cast<char>(id)) : std::string();
  }
  int32_t vocab_size() const override { return 257; }
  std::optional<int32_t> token_id(std::string_view) const override { return std::nullopt; }
  bool is_special(int32_t id) const override { return id == kBos; }
  std::optional<int32_t> bos_id() const override { return kBos; }
  std::optional<int32_t> eos_id() const override { return std::nullopt; }
  std::optional<int32_t> pad_id() const override { return std::nullopt; }
  const std::string& chat_template_text() const override { return empty_; }

  static constexpr int32_t kBos = 256;

 private:
  std::string empty_;
};

std::vector<int32_t> bytes(const std::string& s) { return std::vector<int32_t>(s.begin(), s.end()); }

TEST(PromptEncoder, ChatmlRendersTheUserTurnWithoutBos) {
  ByteTokenizer tok;
  ChatTemplate chatml = chat_template_by_name("chatml");
  chatml.default_system = "Be brief.";
  PromptEncoder enc(tok, chatml, 0);
  const std::string text =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(enc.render("What is 2+2?"), text);
  EncodedPrompt e = enc.encode("What is 2+2?");
  EXPECT_EQ(e.ids, bytes(text));
  EXPECT_FALSE(e.truncated);
  EXPECT_EQ(enc.chat_template().name(), "chatml");
  EXPECT_EQ(&enc.tokenizer(), &tok);
}

TEST(PromptEncoder, RawTemplateAddsBos) {
  ByteTokenizer tok;
  PromptEncoder enc(tok, chat_template_by_name("raw"), -1);
  EXPECT_EQ(enc.render("abc"), "abc");
  std::vector<int32_t> want = {ByteTokenizer::kBos, 'a', 'b', 'c'};
  EXPECT_EQ(enc.encode("abc").ids, want);
}

TEST(PromptEncoder, Llama3CarriesItsBosAsText) {
  ByteTokenizer tok;
  PromptEncoder enc(tok, chat_template_by_name("llama3"), 0);
  EncodedPrompt e = enc.encode("hi");
  ASSERT_FALSE(e.ids.empty());
  EXPECT_NE(e.ids.front(), ByteTokenizer::kBos);
  EXPECT_EQ(enc.render("hi").rfind("<|begin_of_text|>", 0), 0u);
}

TEST(PromptEncoder, CutoffKeepsTheFirstTokens) {
  ByteTokenizer tok;
  PromptEncoder enc(tok, chat_template_by_name("raw"), 4);
  EncodedPrompt e = enc.encode("abcdef");
  std::vector<int32_t> want = {ByteTokenizer::kBos, 'a', 'b', 'c'};
  EXPECT_EQ(e.ids, want);
  EXPECT_TRUE(e.truncated);
  // Exactly at the limit is not a truncation.
  EncodedPrompt exact = enc.encode("abc");
  EXPECT_EQ(exact.ids.size(), 4u);
  EXPECT_FALSE(exact.truncated);
}

TEST(PromptEncoder, ContinuationHasNoBosAndNoTemplate) {
  ByteTokenizer tok;
  PromptEncoder enc(tok, chat_template_by_name("raw"), 2);
  EXPECT_EQ(enc.encode_continuation("The answer is 4."), bytes("The answer is 4."));
}

}  // namespace
}  // namespace tlm
