// tlm adapt: test-time learning over a prompt stream (online or offline), from a YAML recipe
// (configs/tlm-online.yaml, configs/tlm-offline.yaml) with flags overriding its keys.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>

#include <cxxopts.hpp>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/learn/adapt_job.h"
#include "launch/adapt_recipe.h"
#include "launch/commands.h"

namespace tlm {
namespace {

// SIGTERM (a scheduler's stop, mpirun forwarding one) and SIGINT: finish the step (or stop
// between decode steps), checkpoint, exit 0. Only sets an atomic flag: async-signal-safe.
// A second signal exits at once with 128 + its number: the checkpoints already written stay
// (saves are atomic; a save it cuts short leaves a temporary file the next start removes).
std::atomic<int> g_signals{0};
extern "C" void on_stop_signal(int sig) {
  if (g_signals.fetch_add(1) == 0) {
    request_stop();
    return;
  }
  static const char kMessage[] =
      "tlm: a second signal: exiting now, without the end-of-job checkpoint; the job resumes from its newest "
      "checkpoint\n";
  const ssize_t ignored = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  (void)ignored;
  ::_exit(128 + sig);
}

}  // namespace

int run_adapt(int argc, char** argv) {
  cxxopts::Options options(
      "tlm adapt",
      "Test-time learning (TLM): answer a stream of unlabeled prompts and adapt LoRA adapters to\n"
      "it by minimising the prompts' perplexity, weighting high-perplexity prompts more.\n"
      "Writes predictions.jsonl, metrics.jsonl, summary.json and adapter/ (PEFT) to --output-dir.\n\n"
      "  tlm adapt --config configs/tlm-online.yaml --data prompts.jsonl --output-dir runs/x");
  options.add_options()("config", "YAML recipe (flags below override its keys)",
                        cxxopts::value<std::string>())("h,help", "this help");
  add_recipe_flags(options);
  auto parsed = options.parse(argc, argv);
  if (parsed.count("help")) {
    std::cout << options.help({"", "Recipe overrides"}) << std::endl;
    return 0;
  }
  AdaptRecipe recipe = load_adapt_recipe(parsed.count("config") ? parsed["config"].as<std::string>() : "",
                                         parsed);
  LoadedModel m = load_model(recipe.model);
  recipe.adapt.generation.stop_ids = m.files.eos_ids;
  recipe.adapt.generation.pad_id = m.files.tokenizer->pad_id().value_or(0);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);  // what mpirun forwards without ending itself (it exits 1 on its own SIGTERM)
  run_adaptation(*m.model, *m.encoder, recipe.adapt, recipe.model.model, m.grid);
  log_info("outputs in " + recipe.adapt.output_dir);
  return 0;
}

}  // namespace tlm
