// Probe for the metrics parity tests: reads a JSON request, writes our results as JSON.
//   metrics_probe <in.json> <out.json>
// Request keys (all optional):
//   "pairs":    [{"reference": s, "prediction": s}]  -> "rougeL", "rougeLsum": [[p, r, f]]
//   "words":    [s]                                   -> "stems": [s]
//   "texts":    [s]                                   -> "tokens": [[s]] (stemmed)
//   "gsm8k":    [{"prediction": s, "reference": s}]   -> "gsm8k": [{"prediction": s|null,
//                                                         "reference": s|null, "match": b}]
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "engine/common/error.h"
#include "engine/metrics/exact_match.h"
#include "engine/metrics/porter_stemmer.h"
#include "engine/metrics/rouge.h"
#include "engine/metrics/rouge_tokenize.h"

namespace {

nlohmann::json triple(const tlm::RougeScore& s) {
  return nlohmann::json::array({s.precision, s.recall, s.fmeasure});
}

nlohmann::json optional_text(const std::optional<std::string>& s) {
  return s ? nlohmann::json(*s) : nlohmann::json(nullptr);
}

int run(const std::string& in_path, const std::string& out_path) {
  std::ifstream in(in_path, std::ios::binary);
  TLM_CHECK(in.good(), in_path, ": cannot open");
  nlohmann::json req = nlohmann::json::parse(in);
  nlohmann::json out = nlohmann::json::object();

  if (req.contains("pairs")) {
    nlohmann::json l = nlohmann::json::array(), lsum = nlohmann::json::array();
    for (const auto& p : req["pairs"]) {
      std::string ref = p.at("reference").get<std::string>();
      std::string pred = p.at("prediction").get<std::string>();
      l.push_back(triple(tlm::rouge_l(ref, pred, true)));
      lsum.push_back(triple(tlm::rouge_lsum(ref, pred, true)));
    }
    out["rougeL"] = std::move(l);
    out["rougeLsum"] = std::move(lsum);
  }
  if (req.contains("words")) {
    nlohmann::json stems = nlohmann::json::array();
    for (const auto& w : req["words"]) stems.push_back(tlm::porter_stem(w.get<std::string>()));
    out["stems"] = std::move(stems);
  }
  if (req.contains("texts")) {
    nlohmann::json tokens = nlohmann::json::array();
    for (const auto& t : req["texts"]) {
      tokens.push_back(tlm::rouge_tokenize(t.get<std::string>(), true));
    }
    out["tokens"] = std::move(tokens);
  }
  if (req.contains("gsm8k")) {
    nlohmann::json results = nlohmann::json::array();
    for (const auto& c : req["gsm8k"]) {
      std::string pred = c.at("prediction").get<std::string>();
      std::string ref = c.at("reference").get<std::string>();
      results.push_back({{"prediction", optional_text(tlm::extract_gsm8k_answer(pred))},
                         {"reference", optional_text(tlm::gsm8k_reference_answer(ref))},
                         {"match", tlm::gsm8k_exact_match(pred, ref)}});
    }
    out["gsm8k"] = std::move(results);
  }

  std::ofstream os(out_path, std::ios::binary);
  TLM_CHECK(os.good(), out_path, ": cannot write");
  os << out.dump();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: metrics_probe <in.json> <out.json>\n";
    return 2;
  }
  try {
    return run(argv[1], argv[2]);
  } catch (const std::exception& e) {
    std::cerr << "metrics_probe: " << e.what() << "\n";
    return 1;
  }
}
