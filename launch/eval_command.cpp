// tlm eval: scores a run's answers and the model on references.
//   --predictions FILE  predictions.jsonl ({prompt, predict, label}): ROUGE-Lsum (rouge_score
//                       rules, sentences split on newlines) and GSM8K exact match where labels
//                       carry "#### answer"
//   --data FILE         records with references: answer NLL per reference token, teacher-forced,
//                       under the base model and, with --adapter, under the adapted model
#include <cmath>
#include <fstream>
#include <iostream>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "engine/common/atomic_file.h"
#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/generate/scoring.h"
#include "engine/learn/lora.h"
#include "engine/learn/peft_adapter.h"
#include "engine/metrics/exact_match.h"
#include "engine/metrics/rouge.h"
#include "dist/mpi_session.h"
#include "launch/commands.h"
#include "launch/model_options.h"
#include "launch/read_prompts.h"
#include "launch/setting_bounds.h"

namespace tlm {
namespace {

nlohmann::json score_predictions(const std::string& path) {
  std::ifstream in(path);
  TLM_CHECK(in.good(), path, ": cannot open");
  std::vector<RougeScore> rouge;
  int64_t em_hits = 0, em_total = 0, line_no = 0, unlabeled = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json rec;
    try {
      rec = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (a number like 1e999999)
      TLM_FAIL(path, ":", line_no, ": not valid JSON (", e.what(), ")");
    }
    TLM_CHECK(rec.is_object() && rec.contains("predict") && rec["predict"].is_string(), path, ":",
              line_no, ": field 'predict' (a string) is missing");
    if (!rec.contains("label") || !rec["label"].is_string()) {
      ++unlabeled;
      continue;
    }
    const std::string pred = rec["predict"], label = rec["label"];
    rouge.push_back(rouge_lsum(label, pred));
    if (is_numeric_reference(label)) {
      ++em_total;
      em_hits += gsm8k_exact_match(pred, label) ? 1 : 0;
    }
  }
  TLM_CHECK(!rouge.empty(), path, ": no prediction with a reference to score (", line_no, " lines, ", unlabeled,
            " without a label)");
  nlohmann::json out = {{"predictions", path}, {"scored", rouge.size()}, {"unlabeled", unlabeled},
                        {"rouge_lsum", mean_fmeasure(rouge)}};
  if (em_total) out["exact_match"] = static_cast<double>(em_hits) / static_cast<double>(em_total);
  return out;
}

}  // namespace

int run_eval(int argc, char** argv) {
  cxxopts::Options options("tlm eval",
                           "Score predictions (ROUGE-Lsum, GSM8K exact match) and the model's answer NLL\n"
                           "on references, with and without an adapter. Prints one JSON object.");
  add_model_options(options, 4096);
  options.add_options("Evaluation")
      ("predictions", "predictions.jsonl of a run", cxxopts::value<std::string>())
      ("data", "records with references, for answer NLL", cxxopts::value<std::string>())
      ("adapter", "PEFT adapter directory (LoRA or LN tuning, e.g. RUN/adapter) for the adapted answer NLL",
       cxxopts::value<std::string>())
      ("max-samples", "use the first N records of --data (0 = all)", cxxopts::value<int64_t>()->default_value("0"))
      ("batch-size", "records per forward", cxxopts::value<int64_t>()->default_value("8"))
      ("output", "also write the JSON here", cxxopts::value<std::string>())
      ("h,help", "this help");
  auto parsed = options.parse(argc, argv);
  if (parsed.count("help")) {
    std::cout << options.help({"Model", "Evaluation"}) << std::endl;
    return 0;
  }
  TLM_CHECK(parsed.count("predictions") || parsed.count("data"), "give --predictions FILE and/or --data FILE");
  nlohmann::json result = nlohmann::json::object();
  if (parsed.count("predictions")) result["predictions"] = score_predictions(parsed["predictions"].as<std::string>());

  if (parsed.count("data")) {
    std::vector<PromptRecord> records = read_all_prompts(parsed["data"].as<std::string>(), nullptr);
    const int64_t max_samples = bounded_flag<int64_t>(parsed, "max-samples", "stream.max_samples");
    if (max_samples > 0 && static_cast<int64_t>(records.size()) > max_samples) records.resize(static_cast<size_t>(max_samples));
    LoadedModel m = load_model(read_model_options(parsed));
    std::vector<std::vector<int32_t>> prompts, answers;
    for (const PromptRecord& r : records) {
      if (!r.reference) continue;
      prompts.push_back(m.encoder->encode(r.prompt).ids);
      answers.push_back(m.encoder->encode_continuation(*r.reference));
    }
    TLM_CHECK(!prompts.empty(), parsed["data"].as<std::string>(), ": no record has a reference");
    const int64_t batch = bounded_flag<int64_t>(parsed, "batch-size", "eval.score_batch");
    const int32_t pad = m.files.tokenizer->pad_id().value_or(0);
    const ContinuationNll base = continuation_nll(*m.model, prompts, answers, batch, pad);
    nlohmann::json nll = {{"data", parsed["data"].as<std::string>()}, {"records", prompts.size()},
                          {"answer_tokens", base.tokens}, {"answer_nll_base", base.per_token()}};
    if (parsed.count("adapter")) {
      const std::string dir = parsed["adapter"].as<std::string>();
      const std::unique_ptr<TrainableSet> adapter = attach_peft_adapter(*m.model, load_peft_adapter(dir), dir);
      const ContinuationNll adapted = continuation_nll(*m.model, prompts, answers, batch, pad);
      nll["adapter"] = dir;
      nll["answer_nll_adapted"] = adapted.per_token();
    }
    result["answer_nll"] = nll;
  }
  std::cout << result.dump(2) << std::endl;
  if (parsed.count("output") && mpi_world_rank() == 0) {
    write_file_atomically(parsed["output"].as<std::string>(), result.dump(2) + "\n");
  }
  return 0;
}

}  // namespace tlm
