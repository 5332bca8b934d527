#include "engine/metrics/rouge.h"

#include <algorithm>
#include <string>
#include <unordered_map>

#include "engine/metrics/rouge_tokenize.h"

namespace tlm {

namespace {

using Ids = std::vector<int>;

// Tokens become small integers so LCS compares ints; ids are shared by both texts.
class Interner {
 public:
  Ids intern(const std::vector<std::string>& tokens) {
    Ids ids;
    ids.reserve(tokens.size());
    for (const std::string& t : tokens) {
      auto it = ids_.emplace(t, static_cast<int>(ids_.size())).first;
      ids.push_back(it->second);
    }
    return ids;
  }
  int size() const { return static_cast<int>(ids_.size()); }

 private:
  std::unordered_map<std::string, int> ids_;
};

// (rows+1) x (cols+1) LCS length table, row-major.
std::vector<int> lcs_table(const Ids& ref, const Ids& can) {
  const size_t rows = ref.size(), cols = can.size();
  std::vector<int> t((rows + 1) * (cols + 1), 0);
  for (size_t i = 1; i <= rows; ++i) {
    for (size_t j = 1; j <= cols; ++j) {
      int& cell = t[i * (cols + 1) + j];
      if (ref[i - 1] == can[j - 1]) {
        cell = t[(i - 1) * (cols + 1) + (j - 1)] + 1;
      } else {
        cell = std::max(t[(i - 1) * (cols + 1) + j], t[i * (cols + 1) + (j - 1)]);
      }
    }
  }
  return t;
}

// Indices into `ref` of one LCS, chosen as rouge_score's _backtrack_norec does: take a
// match, else move left only when that keeps a strictly longer LCS, else move up.
std::vector<size_t> lcs_indices(const Ids& ref, const Ids& can) {
  std::vector<int> t = lcs_table(ref, can);
  const size_t cols = can.size();
  std::vector<size_t> out;
  size_t i = ref.size(), j = can.size();
  while (i > 0 && j > 0) {
    if (ref[i - 1] == can[j - 1]) {
      out.push_back(i - 1);
      --i;
      --j;
    } else if (t[i * (cols + 1) + (j - 1)] > t[(i - 1) * (cols + 1) + j]) {
      --j;
    } else {
      --i;
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

double fmeasure(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }

std::vector<std::string_view> sentences(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t nl = text.find('\n', start);
    std::string_view piece = text.substr(start, nl == std::string_view::npos ? nl : nl - start);
    if (!piece.empty()) out.push_back(piece);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

}  // namespace

RougeScore rouge_l(std::string_view reference, std::string_view prediction, bool use_stemmer) {
  Interner interner;
  Ids ref = interner.intern(rouge_tokenize(reference, use_stemmer));
  Ids can = interner.intern(rouge_tokenize(prediction, use_stemmer));
  RougeScore s;
  if (ref.empty() || can.empty()) return s;
  int lcs = lcs_table(ref, can).back();
  s.precision = static_cast<double>(lcs) / static_cast<double>(can.size());
  s.recall = static_cast<double>(lcs) / static_cast<double>(ref.size());
  s.fmeasure = fmeasure(s.precision, s.recall);
  return s;
}

RougeScore rouge_lsum(std::string_view reference, std::string_view prediction,
                      bool use_stemmer) {
  Interner interner;
  std::vector<Ids> ref_sents, can_sents;
  for (std::string_view s : sentences(reference)) {
    ref_sents.push_back(interner.intern(rouge_tokenize(s, use_stemmer)));
  }
  for (std::string_view s : sentences(prediction)) {
    can_sents.push_back(interner.intern(rouge_tokenize(s, use_stemmer)));
  }
  RougeScore score;
  if (ref_sents.empty() || can_sents.empty()) return score;
  size_t m = 0, n = 0;
  for (const Ids& s : ref_sents) m += s.size();
  for (const Ids& s : can_sents) n += s.size();
  if (m == 0 || n == 0) return score;

  std::vector<int> count_ref(interner.size(), 0), count_can(interner.size(), 0);
  for (const Ids& s : ref_sents) {
    for (int id : s) ++count_ref[id];
  }
  for (const Ids& s : can_sents) {
    for (int id : s) ++count_can[id];
  }

  size_t hits = 0;
  std::vector<char> in_union;
  for (const Ids& r : ref_sents) {
    in_union.assign(r.size(), 0);
    for (const Ids& c : can_sents) {
      for (size_t idx : lcs_indices(r, c)) in_union[idx] = 1;
    }
    for (size_t idx = 0; idx < r.size(); ++idx) {
      if (!in_union[idx]) continue;
      int id = r[idx];
      if (count_can[id] > 0 && count_ref[id] > 0) {
        ++hits;
        --count_can[id];
        --count_ref[id];
      }
    }
  }
  score.recall = static_cast<double>(hits) / static_cast<double>(m);
  score.precision = static_cast<double>(hits) / static_cast<double>(n);
  score.fmeasure = fmeasure(score.precision, score.recall);
  return score;
}

double mean_fmeasure(const std::vector<RougeScore>& scores) {
  if (scores.empty()) return 0.0;
  double sum = 0.0;
  for (const RougeScore& s : scores) sum += s.fmeasure;
  return sum / static_cast<double>(scores.size());
}

}  // namespace tlm
