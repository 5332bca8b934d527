// Loading an HF tokenizer.json (the `tokenizers` serialization) into the pipeline parts.
// Only the BPE model is supported; WordPiece, WordLevel and Unigram are refused.
#pragma once

#include <string>

#include "engine/tokenizer/hf_tokenizer.h"

namespace tlm {

HfTokenizerParts parse_tokenizer_json(const std::string& path);

// The loader for tokenizer.model, in sentencepiece_tokenizer.cpp.
struct TokenizerConfig;
HfTokenizerParts parse_sentencepiece_model(const std::string& path, const TokenizerConfig& config);

}  // namespace tlm
