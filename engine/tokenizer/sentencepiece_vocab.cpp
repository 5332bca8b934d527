#include "engine/tokenizer/sentencepiece_vocab.h"

#include <unordered_map>

#include "engine/common/error.h"
#include "engine/tokenizer/merge_generation.h"

namespace tlm {

HfTokenizerParts build_sentencepiece_parts(const std::string& source,
                                           const SentencePieceVocab& vocab,
                                           bool add_prefix_space, bool legacy) {
  TLM_CHECK(vocab.types.empty() || vocab.types.size() == vocab.pieces.size(), source,
            ": ", vocab.pieces.size(), " pieces but ", vocab.types.size(), " piece types");
  TLM_CHECK(vocab.scores.empty() || vocab.scores.size() == vocab.pieces.size(), source, ": ",
            vocab.pieces.size(), " pieces but ", vocab.scores.size(), " scores");
  // A Python dict built from the list: first-seen order, last id and score win.
  std::unordered_map<std::string, int32_t> ids;
  std::unordered_map<std::string, double> scores;
  std::vector<std::string> order;
  std::vector<std::pair<std::string, int32_t>> vocab_list;
  for (size_t i = 0; i < vocab.pieces.size(); ++i) {
    const std::string& p = vocab.pieces[i];
    if (!ids.count(p)) order.push_back(p);
    ids[p] = static_cast<int32_t>(i);
    if (!vocab.scores.empty()) scores[p] = vocab.scores[i];
    vocab_list.emplace_back(p, static_cast<int32_t>(i));
  }
  auto merges = vocab.merges ? *vocab.merges
                             : generate_merges(order, ids, vocab.scores.empty() ? nullptr : &scores);

  HfTokenizerParts parts;
  parts.source = source;
  BpeOptions options;
  options.fuse_unk = true;
  options.byte_fallback = true;
  parts.model = std::make_unique<BpeModel>(vocab_list, merges, options, source);

  // LlamaTokenizer's default special tokens, then control pieces (special) and user-defined
  // pieces (plain added tokens), all matched in the raw text.
  for (const char* name : {"<unk>", "<s>", "</s>"}) {
    if (!ids.count(name)) continue;
    AddedToken t;
    t.content = name;
    t.special = true;
    parts.added.add(t, *parts.model);
  }
  for (size_t i = 0; i < vocab.types.size(); ++i) {
    if (vocab.types[i] != kSpControl && vocab.types[i] != kSpUserDefined) continue;
    if (vocab.pieces[i].empty()) continue;
    AddedToken t;
    t.content = vocab.pieces[i];
    t.special = vocab.types[i] == kSpControl;
    parts.added.add(t, *parts.model);
  }

  auto id_of = [&](const char* name) -> std::optional<int32_t> {
    auto it = ids.find(name);
    if (it == ids.end()) return std::nullopt;
    return it->second;
  };
  parts.bos = id_of("<s>");
  parts.eos = id_of("</s>");

  const PrependScheme scheme = !add_prefix_space ? PrependScheme::Never
                               : legacy          ? PrependScheme::Always
                                                 : PrependScheme::First;
  parts.pre_tokenizer = make_metaspace_pre_tokenizer("\xE2\x96\x81", scheme, false);
  parts.decoder = make_sentencepiece_decoder(add_prefix_space);
  return parts;
}

}  // namespace tlm
