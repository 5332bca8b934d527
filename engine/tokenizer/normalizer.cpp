#include "engine/tokenizer/normalizer.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#include <unicode/locid.h>

#include <vector>

#include "engine/common/error.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/split_pattern.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  UnicodeNormalizer(const std::string& form, const std::string& where) {
    UErrorCode status = U_ZERO_ERROR;
    if (form == "NFC") impl_ = icu::Normalizer2::getNFCInstance(status);
    else if (form == "NFD") impl_ = icu::Normalizer2::getNFDInstance(status);
    else if (form == "NFKC") impl_ = icu::Normalizer2::getNFKCInstance(status);
    else impl_ = icu::Normalizer2::getNFKDInstance(status);
    TLM_CHECK(U_SUCCESS(status) && impl_ != nullptr, where, ": ICU has no ", form,
              " normalizer (", u_errorName(status), ")");
  }
  void normalize(std::string& text) const override {
    UErrorCode status = U_ZERO_ERROR;
    icu::UnicodeString in = icu::UnicodeString::fromUTF8(text);
    icu::UnicodeString out = impl_->normalize(in, status);
    TLM_CHECK(U_SUCCESS(status), "Unicode normalization failed: ", u_errorName(status));
    text.clear();
    out.toUTF8String(text);
  }

 private:
  const icu::Normalizer2* impl_ = nullptr;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    icu::UnicodeString s = icu::UnicodeString::fromUTF8(text);
    s.toLower(icu::Locale::getRoot());
    text.clear();
    s.toUTF8String(text);
  }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(SplitPattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string& text) const override {
    text = pattern_.replace_all(text, content_);
  }

 private:
  SplitPattern pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    size_t begin = 0, end = text.size(), pos = 0;
    bool seen = false;
    while (pos < text.size()) {
      size_t start = pos;
      uint32_t cp = utf8_decode_at(text, pos);
      if (!is_white_space(cp)) {
        if (!seen) begin = start;
        seen = true;
        end = pos;
      }
    }
    if (!seen) {
      if (left_ || right_) text.clear();
      return;
    }
    if (!left_) begin = 0;
    if (!right_) end = text.size();
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = bytes_to_byte_level(text); }
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void normalize(std::string& text) const override {
    for (const auto& p : parts_) p->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const nlohmann::json& config,
                                             const std::string& where) {
  if (config.is_null()) return nullptr;
  TLM_CHECK(config.is_object() && config.contains("type"), where,
            ": expected an object with a \"type\"");
  const std::string type = config.at("type").get<std::string>();
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    return std::make_unique<UnicodeNormalizer>(type, where);
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend") {
    return std::make_unique<PrependNormalizer>(config.at("prepend").get<std::string>());
  }
  if (type == "Replace") {
    return std::make_unique<ReplaceNormalizer>(
        parse_split_pattern(config.at("pattern"), where + ".pattern"),
        config.at("content").get<std::string>());
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(config.value("strip_left", true),
                                             config.value("strip_right", true));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    const auto& list = config.at("normalizers");
    for (size_t i = 0; i < list.size(); ++i) {
      auto part = parse_normalizer(list[i], str_cat(where, ".normalizers[", i, "]"));
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  TLM_FAIL(where, ": normalizer type \"", type,
           "\" is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, "
           "Strip, ByteLevel, Sequence)");
}

}  // namespace tlm
