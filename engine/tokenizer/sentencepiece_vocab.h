// SentencePiece-style vocabularies (a tokenizer.model, or a GGUF `llama` vocabulary) turned
// into the pipeline HF's LlamaTokenizer builds from them: BPE with merges regenerated from
// the vocabulary, byte fallback, Metaspace pre-tokenizer, no normalizer.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/hf_tokenizer.h"

namespace tlm {

// sentencepiece_model.proto piece types.
enum SentencePieceType { kSpNormal = 1, kSpUnknown = 2, kSpControl = 3, kSpUserDefined = 4,
                         kSpUnused = 5, kSpByte = 6 };

struct SentencePieceVocab {
  std::vector<std::string> pieces;
  std::vector<int> types;
  std::vector<double> scores;  // empty: merges follow the ids (tokenizer.model path)
  // Merges given by the file (GGUF tokenizer.ggml.merges); otherwise regenerated.
  std::optional<std::vector<std::pair<std::string, std::string>>> merges;
};

// `add_prefix_space` and `legacy` select Metaspace's prepend scheme (always / first / never)
// and whether the decoder strips the leading space, as LlamaTokenizer does.
HfTokenizerParts build_sentencepiece_parts(const std::string& source,
                                           const SentencePieceVocab& vocab,
                                           bool add_prefix_space, bool legacy);

}  // namespace tlm
