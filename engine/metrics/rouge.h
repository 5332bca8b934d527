// ROUGE-L and ROUGE-Lsum exactly as Google's rouge_score 0.1.2 computes them with
// RougeScorer(['rougeL', 'rougeLsum'], use_stemmer=True), the official TLM metric.
//
// ROUGE-L: LCS of the whole token sequences; P = LCS/|prediction|, R = LCS/|reference|.
// ROUGE-Lsum (summary-level LCS, Lin 2004 section 3.2): both texts are split into
// sentences on "\n" (empty pieces dropped; rouge_score's default, split_summaries=False:
// the official script's nltk punkt splitting needs data no package ships); for every
// reference sentence the union of its LCS index sets with each prediction sentence is
// taken, and each union token is a hit only while both texts still have unmatched copies
// of it (ROUGE-1.5.5's no-double-counting rule). P = hits/|prediction tokens|,
// R = hits/|reference tokens|. Ties in the LCS backtrack are broken as rouge_score does,
// which matters for the union.
// F = 2PR/(P+R), 0 when P+R = 0. Empty cases as rouge_score: no tokens (or, for Lsum, no
// non-empty sentence) on either side gives P = R = F = 0.
#pragma once

#include <string_view>
#include <vector>

namespace tlm {

struct RougeScore {
  double precision = 0.0;
  double recall = 0.0;
  double fmeasure = 0.0;
};

// Argument order follows rouge_score's score(target, prediction).
RougeScore rouge_l(std::string_view reference, std::string_view prediction,
                   bool use_stemmer = true);
RougeScore rouge_lsum(std::string_view reference, std::string_view prediction,
                      bool use_stemmer = true);

// Corpus score: the mean of per-sample F-measures (0 for an empty corpus).
double mean_fmeasure(const std::vector<RougeScore>& scores);

}  // namespace tlm
