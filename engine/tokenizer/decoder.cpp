#include "engine/tokenizer/decoder.h"

#include <algorithm>

#include "engine/common/error.h"
#include "engine/tokenizer/split_pattern.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

namespace {

class ByteLevelDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (auto& t : tokens) bytes += token_bytes(std::move(t));
    return {utf8_lossy(bytes)};
  }
  std::string token_bytes(std::string token) const override {
    // A token with characters outside the byte alphabet (an added token) stays as it is.
    std::string out;
    if (byte_level_to_bytes(token, out)) return out;
    return token;
  }
};

// Parses "<0xAB>"; -1 when `token` is not a byte token.
int parse_byte_token(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    char c = token[static_cast<size_t>(i)];
    int d = (c >= '0' && c <= '9') ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    value = value * 16 + d;
  }
  return value;
}

class ByteFallbackDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    auto flush = [&]() {
      if (bytes.empty()) return;
      if (utf8_is_valid(bytes)) {
        out.push_back(bytes);
      } else {
        // HF emits one U+FFFD per byte of an invalid run.
        for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      bytes.clear();
    };
    for (auto& t : tokens) {
      int b = parse_byte_token(t);
      if (b >= 0) {
        bytes += static_cast<char>(b);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    return out;
  }
  std::string token_bytes(std::string token) const override {
    int b = parse_byte_token(token);
    return b >= 0 ? std::string(1, static_cast<char>(b)) : token;
  }
};

class FuseDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string joined;
    for (const auto& t : tokens) joined += t;
    return {joined};
  }
  std::string token_bytes(std::string token) const override { return token; }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(SplitPattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) t = pattern_.replace_all(t, content_);
    return tokens;
  }
  std::string token_bytes(std::string token) const override {
    return pattern_.replace_all(token, content_);
  }

 private:
  SplitPattern pattern_;
  std::string content_;
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(uint32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<size_t, size_t>> chars;  // byte ranges of the characters
      size_t pos = 0;
      while (pos < t.size()) {
        size_t b = pos;
        utf8_decode_at(t, pos);
        chars.emplace_back(b, pos);
      }
      auto is_content = [&](size_t i) {
        size_t p = chars[i].first;
        return utf8_decode_at(t, p) == content_;
      };
      size_t start_cut = 0;
      for (size_t i = 0; i < std::min(start_, chars.size()); ++i) {
        if (!is_content(i)) break;
        start_cut = i + 1;
      }
      size_t stop_cut = chars.size();
      for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        size_t index = chars.size() - i - 1;
        if (!is_content(index)) break;
        stop_cut = index;
      }
      if (start_cut >= stop_cut) {
        t.clear();
        continue;
      }
      size_t b = chars[start_cut].first;
      size_t e = stop_cut == chars.size() ? t.size() : chars[stop_cut].first;
      t = t.substr(b, e - b);
    }
    return tokens;
  }
  std::string token_bytes(std::string token) const override { return token; }
  int leading_spaces_stripped() const override {
    return content_ == ' ' ? static_cast<int>(start_) : 0;
  }

 private:
  uint32_t content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool prepends)
      : replacement_(std::move(replacement)), prepends_(prepends) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    auto literal = SplitPattern::literal(replacement_);
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = literal.replace_all(tokens[i], (i == 0 && prepends_) ? "" : " ");
    }
    return tokens;
  }
  std::string token_bytes(std::string token) const override {
    return SplitPattern::literal(replacement_).replace_all(token, " ");
  }
  // HF drops every replacement character of the first token; for streaming we drop the
  // one leading space, which is what a first token normally carries.
  int leading_spaces_stripped() const override { return prepends_ ? 1 : 0; }

 private:
  std::string replacement_;
  bool prepends_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& p : parts_) tokens = p->decode_chain(std::move(tokens));
    return tokens;
  }
  std::string token_bytes(std::string token) const override {
    for (const auto& p : parts_) token = p->token_bytes(std::move(token));
    return token;
  }
  int leading_spaces_stripped() const override {
    int n = 0;
    for (const auto& p : parts_) n += p->leading_spaces_stripped();
    return n;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> make_byte_level_decoder() { return std::make_unique<ByteLevelDecoder>(); }

std::unique_ptr<Decoder> make_sentencepiece_decoder(bool strip_leading_space) {
  std::vector<std::unique_ptr<Decoder>> parts;
  parts.push_back(std::make_unique<ReplaceDecoder>(SplitPattern::literal("\xE2\x96\x81"), " "));
  parts.push_back(std::make_unique<ByteFallbackDecoder>());
  parts.push_back(std::make_unique<FuseDecoder>());
  if (strip_leading_space) parts.push_back(std::make_unique<StripDecoder>(' ', 1, 0));
  return std::make_unique<SequenceDecoder>(std::move(parts));
}

std::unique_ptr<Decoder> parse_decoder(const nlohmann::json& config, const std::string& where) {
  if (config.is_null()) return nullptr;
  TLM_CHECK(config.is_object() && config.contains("type"), where,
            ": expected an object with a \"type\"");
  const std::string type = config.at("type").get<std::string>();
  if (type == "ByteLevel") return make_byte_level_decoder();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(
        parse_split_pattern(config.at("pattern"), where + ".pattern"),
        config.at("content").get<std::string>());
  }
  if (type == "Strip") {
    const std::string content = config.at("content").get<std::string>();
    size_t pos = 0;
    TLM_CHECK(!content.empty() && utf8_length(content) == 1, where,
              ".content: expected one character");
    for (const char* key : {"start", "stop"})
      TLM_CHECK(config.at(key).is_number_unsigned(), where, ".", key, ": expected a count, got ",
                config.at(key).dump());
    return std::make_unique<StripDecoder>(utf8_decode_at(content, pos),
                                          config.at("start").get<size_t>(),
                                          config.at("stop").get<size_t>());
  }
  if (type == "Metaspace") {
    std::string scheme = config.value("prepend_scheme", std::string("always"));
    bool prepends = scheme != "never";
    if (config.contains("add_prefix_space") && config.at("add_prefix_space").is_boolean() &&
        !config.at("add_prefix_space").get<bool>()) {
      prepends = false;
    }
    return std::make_unique<MetaspaceDecoder>(config.at("replacement").get<std::string>(),
                                              prepends);
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    const auto& list = config.at("decoders");
    for (size_t i = 0; i < list.size(); ++i) {
      auto part = parse_decoder(list[i], str_cat(where, ".decoders[", i, "]"));
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  TLM_FAIL(where, ": decoder type \"", type,
           "\" is not supported (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, "
           "Metaspace, Sequence)");
}

std::string decode_tokens(const Decoder* decoder, std::vector<std::string> tokens) {
  std::string out;
  if (!decoder) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const auto& t : decoder->decode_chain(std::move(tokens))) out += t;
  return out;
}

}  // namespace tlm
