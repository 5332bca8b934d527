#include "engine/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <functional>

#include "engine/common/error.h"
#include "engine/tokenizer/split_pattern.h"
#include "engine/tokenizer/unicode_text.h"

namespace tlm {

SplitBehavior parse_split_behavior(const nlohmann::json& value, const std::string& where) {
  const std::string name = value.get<std::string>();
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  TLM_FAIL(where, ": unknown split behavior \"", name,
           "\" (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

void split_piece(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches,
                 SplitBehavior behavior, bool invert, std::vector<Piece>& out) {
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  const size_t len = piece.text.size();
  std::vector<Part> parts;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) parts.push_back({prev, b, false});
    parts.push_back({b, e, true});
    prev = e;
  }
  if (prev != len || parts.empty()) parts.push_back({prev, len, false});
  if (invert) {
    for (auto& p : parts) p.is_match = !p.is_match;
  }

  struct Kept {
    size_t begin, end;
    bool keep;
  };
  std::vector<Kept> kept;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const auto& p : parts) kept.push_back({p.begin, p.end, true});
      break;
    case SplitBehavior::Removed:
      for (const auto& p : parts) kept.push_back({p.begin, p.end, !p.is_match});
      break;
    case SplitBehavior::Contiguous: {
      bool previous = false;
      for (const auto& p : parts) {
        if (p.is_match == previous && !kept.empty()) kept.back().end = p.end;
        else kept.push_back({p.begin, p.end, true});
        previous = p.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool previous = false;
      for (const auto& p : parts) {
        if (p.is_match && !previous && !kept.empty()) kept.back().end = p.end;
        else kept.push_back({p.begin, p.end, true});
        previous = p.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous && !kept.empty()) kept.back().begin = it->begin;
        else kept.push_back({it->begin, it->end, true});
        previous = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
  }
  for (const auto& k : kept) {
    if (!k.keep || k.begin == k.end) continue;
    Piece p;
    p.text = piece.text.substr(k.begin, k.end - k.begin);
    p.at_start = piece.at_start && k.begin == 0;
    out.push_back(std::move(p));
  }
}

namespace {

// Applies `fn` to every text piece, replacing it by the pieces `fn` appends.
void for_each_text_piece(std::vector<Piece>& pieces,
                         const std::function<void(Piece&, std::vector<Piece>&)>& fn) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (auto& piece : pieces) {
    if (piece.id >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    fn(piece, out);
  }
  pieces.swap(out);
}

// Each character for which `pred` holds is one match (HF's Fn(char) -> bool pattern).
std::vector<std::pair<size_t, size_t>> char_matches(const std::string& text,
                                                    bool (*pred)(uint32_t)) {
  std::vector<std::pair<size_t, size_t>> matches;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = pos;
    if (pred(utf8_decode_at(text, pos))) matches.emplace_back(start, pos);
  }
  return matches;
}

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern, "ByteLevel pre-tokenizer");
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for_each_text_piece(pieces, [&](Piece& piece, std::vector<Piece>& out) {
      if (add_prefix_space_ && (piece.text.empty() || piece.text[0] != ' ')) {
        piece.text.insert(0, " ");
      }
      std::vector<Piece> parts;
      if (regex_) {
        split_piece(piece, regex_->find_all(piece.text), SplitBehavior::Isolated, false, parts);
      } else if (!piece.text.empty()) {
        parts.push_back(std::move(piece));
      }
      for (auto& p : parts) {
        p.text = bytes_to_byte_level(p.text);
        out.push_back(std::move(p));
      }
    });
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(SplitPattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for_each_text_piece(pieces, [&](Piece& piece, std::vector<Piece>& out) {
      split_piece(piece, pattern_.find_all(piece.text), behavior_, invert_, out);
    });
  }

 private:
  SplitPattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class CharClassPreTokenizer : public PreTokenizer {
 public:
  CharClassPreTokenizer(bool (*pred)(uint32_t), SplitBehavior behavior)
      : pred_(pred), behavior_(behavior) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for_each_text_piece(pieces, [&](Piece& piece, std::vector<Piece>& out) {
      split_piece(piece, char_matches(piece.text, pred_), behavior_, false, out);
    });
  }

 private:
  bool (*pred_)(uint32_t);
  SplitBehavior behavior_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for_each_text_piece(pieces, [&](Piece& piece, std::vector<Piece>& out) {
      piece.text = SplitPattern::literal(" ").replace_all(piece.text, replacement_);
      bool starts = piece.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == PrependScheme::Always ||
                      (scheme_ == PrependScheme::First && piece.at_start))) {
        piece.text.insert(0, replacement_);
      }
      if (split_) {
        split_piece(piece, SplitPattern::literal(replacement_).find_all(piece.text),
                    SplitBehavior::MergedWithNext, false, out);
      } else if (!piece.text.empty()) {
        out.push_back(std::move(piece));
      }
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, use_regex);
}

std::unique_ptr<PreTokenizer> make_split_pre_tokenizer(const std::string& regex,
                                                       SplitBehavior behavior,
                                                       const std::string& where) {
  return std::make_unique<SplitPreTokenizer>(SplitPattern::regex(regex, where), behavior, false);
}

std::unique_ptr<PreTokenizer> make_metaspace_pre_tokenizer(const std::string& replacement,
                                                           PrependScheme scheme, bool split) {
  return std::make_unique<MetaspacePreTokenizer>(replacement, scheme, split);
}

std::unique_ptr<PreTokenizer> make_sequence_pre_tokenizer(
    std::vector<std::unique_ptr<PreTokenizer>> parts) {
  return std::make_unique<SequencePreTokenizer>(std::move(parts));
}

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const nlohmann::json& config,
                                                  const std::string& where) {
  if (config.is_null()) return nullptr;
  TLM_CHECK(config.is_object() && config.contains("type"), where,
            ": expected an object with a \"type\"");
  const std::string type = config.at("type").get<std::string>();
  if (type == "ByteLevel") {
    return make_byte_level_pre_tokenizer(config.value("add_prefix_space", true),
                                         config.value("use_regex", true));
  }
  if (type == "Split") {
    return std::make_unique<SplitPreTokenizer>(
        parse_split_pattern(config.at("pattern"), where + ".pattern"),
        parse_split_behavior(config.at("behavior"), where + ".behavior"),
        config.value("invert", false));
  }
  if (type == "Digits") {
    bool individual = config.value("individual_digits", false);
    return std::make_unique<CharClassPreTokenizer>(
        is_numeric_char, individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
  }
  if (type == "Punctuation") {
    SplitBehavior behavior = SplitBehavior::Isolated;
    if (config.contains("behavior")) {
      behavior = parse_split_behavior(config.at("behavior"), where + ".behavior");
    }
    return std::make_unique<CharClassPreTokenizer>(is_punctuation_char, behavior);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<CharClassPreTokenizer>(is_white_space, SplitBehavior::Removed);
  }
  if (type == "Metaspace") {
    PrependScheme scheme = PrependScheme::Always;
    if (config.contains("prepend_scheme")) {
      const std::string s = config.at("prepend_scheme").get<std::string>();
      if (s == "always") scheme = PrependScheme::Always;
      else if (s == "first") scheme = PrependScheme::First;
      else if (s == "never") scheme = PrependScheme::Never;
      else TLM_FAIL(where, ".prepend_scheme: unknown value \"", s, "\"");
    }
    if (config.contains("add_prefix_space") && config.at("add_prefix_space").is_boolean() &&
        !config.at("add_prefix_space").get<bool>()) {
      scheme = PrependScheme::Never;
    }
    return make_metaspace_pre_tokenizer(config.at("replacement").get<std::string>(), scheme,
                                        config.value("split", true));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    const auto& list = config.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) {
      auto part = parse_pre_tokenizer(list[i], str_cat(where, ".pretokenizers[", i, "]"));
      if (part) parts.push_back(std::move(part));
    }
    return make_sequence_pre_tokenizer(std::move(parts));
  }
  TLM_FAIL(where, ": pre-tokenizer type \"", type,
           "\" is not supported (supported: ByteLevel, Split, Digits, Metaspace, Punctuation, "
           "WhitespaceSplit, Sequence)");
}

}  // namespace tlm
