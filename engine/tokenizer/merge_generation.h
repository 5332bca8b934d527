// Rebuilding BPE merges from a vocabulary that has none (SentencePiece models, GGUF `llama`
// vocabularies), exactly as transformers' generate_merges does, so the merge ranks and
// therefore the encodings equal HF's.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tlm {

// `tokens` is the vocabulary in first-seen order without repeats; `vocab` maps each to its
// id. Every token is split at every character boundary; a split whose halves are both in the
// vocabulary is a merge. Without `scores`, merges sort by the id of the merged token
// (ascending); with them, by score descending. Ties: by the halves' lengths in characters
// (same direction), then first-seen order.
std::vector<std::pair<std::string, std::string>> generate_merges(
    const std::vector<std::string>& tokens, const std::unordered_map<std::string, int32_t>& vocab,
    const std::unordered_map<std::string, double>* scores);

}  // namespace tlm
