// Loading an HF tokenizer.json (the `tokenizers` serialization) into the pipeline parts.
// Only the BPE model is supported; WordPiece, WordLevel and Unigram are refused.
#pragma once

#include <string>

#include "engine/tokenizer/hf_tokenizer.h"

namespace tlm {

struct TokenizerConfig;

// With `as_llama_tokenizer`, only the vocabulary, merges, added tokens and post-processor
// are taken from the file and the rest is LlamaTokenizer's pipeline (Metaspace, byte
// fallback, no normalizer), which is what transformers 5 does for a SentencePiece-style
// tokenizer.json whose tokenizer_config.json names LlamaTokenizer.
HfTokenizerParts parse_tokenizer_json(const std::string& path, bool as_llama_tokenizer,
                                      const TokenizerConfig& config);

// The loader for tokenizer.model, in sentencepiece_tokenizer.cpp.
HfTokenizerParts parse_sentencepiece_model(const std::string& path, const TokenizerConfig& config);

}  // namespace tlm
