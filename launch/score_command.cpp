// tlm score: per-record input perplexity of a prompt file, as JSONL.
#include <cmath>
#include <fstream>
#include <iostream>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include "engine/common/log.h"

#include "engine/common/error.h"
#include "engine/generate/scoring.h"
#include "engine/learn/peft_adapter.h"
#include "launch/commands.h"
#include "launch/model_options.h"
#include "launch/read_prompts.h"
#include "launch/setting_bounds.h"

namespace tlm {

int run_score(int argc, char** argv) {
  cxxopts::Options options("tlm score",
                           "Input perplexity of every record of a JSON / JSONL / text prompt file.\n"
                           "Writes one JSON line per record: {index, line, prompt_tokens, ce, ppl, truncated}.");
  add_model_options(options, 0);
  options.add_options("Scoring")
      ("data", "prompt file (JSON array, JSONL or text)", cxxopts::value<std::string>())
      ("adapter", "score through this PEFT adapter directory (LoRA or LN tuning; tlm adapt's adapter/)",
       cxxopts::value<std::string>())
      ("batch-size", "records per forward", cxxopts::value<int64_t>()->default_value("8"))
      ("output", "write the JSONL here instead of stdout", cxxopts::value<std::string>())
      ("h,help", "this help");
  auto parsed = options.parse(argc, argv);
  if (parsed.count("help")) {
    std::cout << options.help({"Model", "Scoring"}) << std::endl;
    return 0;
  }
  TLM_CHECK(parsed.count("data"), "--data FILE is required");
  const std::string data = parsed["data"].as<std::string>();
  SkipReport skips;
  std::vector<PromptRecord> records = read_all_prompts(data, &skips);
  LoadedModel m = load_model(read_model_options(parsed));
  const int32_t pad = m.files.tokenizer->pad_id().value_or(0);
  std::unique_ptr<TrainableSet> adapter;  // attached to the model while it lives
  if (parsed.count("adapter")) {
    const std::string dir = parsed["adapter"].as<std::string>();
    adapter = attach_peft_adapter(*m.model, load_peft_adapter(dir), dir);
    log_info(str_cat("scoring through the ", trainable_kind_name(adapter->kind()), " adapter ", dir));
  }

  std::vector<std::vector<int32_t>> ids;
  std::vector<const PromptRecord*> kept;
  std::vector<bool> truncated;
  int64_t too_short = 0;
  for (const PromptRecord& r : records) {
    EncodedPrompt e = m.encoder->encode(r.prompt);
    if (e.ids.size() < 2) {
      log_warn(str_cat(r.source, ":", r.line, ": skipped record: prompt encodes to ", e.ids.size(),
                       " token(s), no next-token target"));
      ++too_short;
      continue;
    }
    ids.push_back(std::move(e.ids));
    truncated.push_back(e.truncated);
    kept.push_back(&r);
  }
  TLM_CHECK(!ids.empty(), data, ": no usable record to score (", records.size(), " read, ", skips.total(),
            " bad, ", too_short, " too short)");
  const std::vector<double> ce = mean_token_nll(*m.model, ids, bounded_flag<int64_t>(parsed, "batch-size", "eval.score_batch"), pad);

  std::ofstream file;
  if (parsed.count("output") && m.grid.is_root()) {
    file.open(parsed["output"].as<std::string>());
    TLM_CHECK(file.good(), parsed["output"].as<std::string>(), ": cannot open for writing");
  }
  std::ostream& out = file.is_open() ? file : std::cout;
  double total = 0;
  for (size_t i = 0; i < kept.size(); ++i) {
    nlohmann::json rec = {{"index", kept[i]->index}, {"line", kept[i]->line},
                          {"prompt_tokens", ids[i].size()}, {"ce", ce[i]},
                          {"ppl", std::exp(ce[i])}, {"truncated", static_cast<bool>(truncated[i])}};
    out << rec.dump() << "\n";
    total += ce[i];
  }
  const double mean_ce = kept.empty() ? 0.0 : total / static_cast<double>(kept.size());
  log_info(str_cat(data, ": ", kept.size(), " records scored, mean ce ", fixed(mean_ce, 4), " (ppl ",
                   fixed(std::exp(mean_ce), 2), "); skipped ", skips.total(), " bad + ", too_short,
                   " too short"));
  return 0;
}

}  // namespace tlm
