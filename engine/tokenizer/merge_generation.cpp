#include "engine/tokenizer/merge_generation.h"

#include <algorithm>
#include <tuple>

#include "engine/tokenizer/unicode_text.h"

namespace tlm {

std::vector<std::pair<std::string, std::string>> generate_merges(
    const std::vector<std::string>& tokens, const std::unordered_map<std::string, int32_t>& vocab,
    const std::unordered_map<std::string, double>* scores) {
  struct Candidate {
    std::string left, right;
    double score;
    size_t left_len, right_len;  // in characters
  };
  std::vector<Candidate> all;
  for (const std::string& merged : tokens) {
    const double score = scores ? scores->at(merged) : static_cast<double>(vocab.at(merged));
    std::vector<Candidate> local;
    size_t pos = 0;
    utf8_decode_at(merged, pos);  // splits start after the first character
    size_t left_chars = 1;
    const size_t total_chars = utf8_length(merged);
    while (pos < merged.size()) {
      std::string left = merged.substr(0, pos);
      std::string right = merged.substr(pos);
      if (vocab.count(left) && vocab.count(right)) {
        local.push_back({std::move(left), std::move(right), score, left_chars,
                         total_chars - left_chars});
      }
      utf8_decode_at(merged, pos);
      ++left_chars;
    }
    std::stable_sort(local.begin(), local.end(), [&](const Candidate& a, const Candidate& b) {
      return std::make_pair(vocab.at(a.left), vocab.at(a.right)) <
             std::make_pair(vocab.at(b.left), vocab.at(b.right));
    });
    for (auto& c : local) all.push_back(std::move(c));
  }
  const bool descending = scores != nullptr;
  std::stable_sort(all.begin(), all.end(), [descending](const Candidate& a, const Candidate& b) {
    auto ka = std::make_tuple(a.score, a.left_len, a.right_len);
    auto kb = std::make_tuple(b.score, b.left_len, b.right_len);
    return descending ? kb < ka : ka < kb;
  });
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(all.size());
  for (auto& c : all) merges.emplace_back(std::move(c.left), std::move(c.right));
  return merges;
}

}  // namespace tlm
