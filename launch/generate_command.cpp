// tlm generate: answers prompts with the model (greedy by default) and reports each
// prompt's input perplexity under the model.
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <optional>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include "engine/common/log.h"

#include "engine/common/atomic_file.h"
#include "engine/common/error.h"
#include "engine/generate/generator.h"
#include "engine/generate/scoring.h"
#include "launch/commands.h"
#include "launch/model_options.h"
#include "launch/read_prompts.h"
#include "launch/setting_bounds.h"

namespace tlm {

int run_generate(int argc, char** argv) {
  cxxopts::Options options("tlm generate",
                           "Answer prompts with the model and print each prompt's input perplexity.\n"
                           "Prompts come from --prompt (repeatable) and/or --prompts-file.");
  add_model_options(options, 0);
  options.add_options("Generation")
      ("p,prompt", "a prompt (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("prompts-file", "JSON / JSONL / text file of prompts", cxxopts::value<std::string>())
      ("max-new-tokens", "tokens to generate at most", cxxopts::value<int64_t>()->default_value("256"))
      ("temperature", "0 = greedy", cxxopts::value<double>()->default_value("0"))
      ("top-p", "nucleus sampling mass", cxxopts::value<double>()->default_value("1"))
      ("seed", "sampling seed", cxxopts::value<uint64_t>()->default_value("0"))
      ("batch-size", "prompts per batch", cxxopts::value<int64_t>()->default_value("8"))
      ("max-samples", "answer only the first N prompts of --prompts-file (0 = all)",
       cxxopts::value<int64_t>()->default_value("0"))
      ("output", "also write JSONL records {prompt, predict, label, ce, ppl, ...} here (label: the\n"
                 "record's reference, so `tlm eval --predictions` can score the file)",
       cxxopts::value<std::string>())
      ("summary", "write {decode_seconds, new_tokens, score_seconds, prompt_tokens, ...} as JSON here",
       cxxopts::value<std::string>())
      ("h,help", "this help");
  auto parsed = options.parse(argc, argv);
  if (parsed.count("help")) {
    std::cout << options.help({"Model", "Generation"}) << std::endl;
    return 0;
  }
  std::vector<std::string> prompts;
  std::vector<std::optional<std::string>> labels;
  if (parsed.count("prompt")) prompts = parsed["prompt"].as<std::vector<std::string>>();
  labels.resize(prompts.size());
  if (parsed.count("prompts-file")) {
    std::vector<PromptRecord> records = read_all_prompts(parsed["prompts-file"].as<std::string>(), nullptr);
    const int64_t max_samples = bounded_flag<int64_t>(parsed, "max-samples", "stream.max_samples");
    if (max_samples > 0 && static_cast<int64_t>(records.size()) > max_samples)
      records.resize(static_cast<size_t>(max_samples));
    for (const PromptRecord& r : records) {
      prompts.push_back(r.prompt);
      labels.push_back(r.reference);
    }
  }
  TLM_CHECK(!prompts.empty(), "no prompts: give --prompt TEXT or --prompts-file FILE");

  LoadedModel m = load_model(read_model_options(parsed));
  GenerationOptions gen;
  gen.max_new_tokens = bounded_flag<int64_t>(parsed, "max-new-tokens", "generation.max_new_tokens");
  gen.sampling.temperature = bounded_flag<double>(parsed, "temperature", "generation.temperature");
  gen.sampling.top_p = bounded_flag<double>(parsed, "top-p", "generation.top_p");
  gen.sampling.seed = parsed["seed"].as<uint64_t>();
  gen.stop_ids = m.files.eos_ids;
  gen.pad_id = m.files.tokenizer->pad_id().value_or(0);
  const int64_t batch_size = bounded_flag<int64_t>(parsed, "batch-size", "generation.batch_size");

  std::ofstream out_file;
  if (parsed.count("output") && m.grid.is_root()) {
    out_file.open(parsed["output"].as<std::string>());
    TLM_CHECK(out_file.good(), parsed["output"].as<std::string>(), ": cannot open for writing");
  }
  double decode_seconds = 0, score_seconds = 0;
  int64_t all_new_tokens = 0, prompt_tokens = 0;
  for (size_t start = 0; start < prompts.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(prompts.size(), start + static_cast<size_t>(batch_size));
    std::vector<std::vector<int32_t>> ids;
    for (size_t i = start; i < end; ++i) ids.push_back(m.encoder->encode(prompts[i]).ids);
    const auto s0 = std::chrono::steady_clock::now();
    const std::vector<double> ce = mean_token_nll(*m.model, ids, batch_size, gen.pad_id);
    score_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    for (const auto& p : ids) prompt_tokens += static_cast<int64_t>(p.size());
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<Generation> answers = generate(*m.model, ids, gen);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    decode_seconds += secs;
    size_t new_tokens = 0;
    for (const auto& a : answers) new_tokens += a.ids.size();
    all_new_tokens += static_cast<int64_t>(new_tokens);
    for (size_t i = start; i < end; ++i) {
      const Generation& a = answers[i - start];
      const std::string text = m.files.tokenizer->decode(a.ids, /*skip_special=*/true);
      const double c = ce[i - start];
      std::cout << "[" << i + 1 << "/" << prompts.size() << "] input perplexity "
                << std::exp(c) << " (ce " << c << ", " << ids[i - start].size() << " tokens)\n"
                << "> " << prompts[i] << "\n" << text << "\n\n";
      if (out_file.is_open()) {
        nlohmann::json rec = {{"prompt", prompts[i]}, {"predict", text}, {"ce", c},
                              {"ppl", std::exp(c)}, {"prompt_tokens", ids[i - start].size()},
                              {"new_tokens", a.ids.size()}, {"stopped", a.stopped}};
        if (labels[i]) rec["label"] = *labels[i];
        out_file << rec.dump() << "\n";
      }
    }
    log_info(str_cat("batch of ", end - start, ": ", new_tokens, " new tokens in ", fixed(secs, 2),
                     " s (", fixed(secs > 0 ? new_tokens / secs : 0.0, 1), " tokens/s)"));
  }
  if (parsed.count("summary") && m.grid.is_root()) {
    const std::string path = parsed["summary"].as<std::string>();
    write_file_atomically(path, nlohmann::json{{"prompts", prompts.size()}, {"batch_size", batch_size},
                                               {"decode_seconds", decode_seconds}, {"new_tokens", all_new_tokens},
                                               {"score_seconds", score_seconds}, {"prompt_tokens", prompt_tokens}}
                                        .dump(2) + "\n");
  }
  return 0;
}

}  // namespace tlm
