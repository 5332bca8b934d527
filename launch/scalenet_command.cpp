// tlm scalenet-train: trains ScaleNet, episodic adaptation's per-layer, per-step step sizes,
// on records with reference answers (engine/learn/scalenet_job.h). The episodic recipe
// (configs/episodic.yaml) gives the LoRA, K and the inner lr; flags override its keys.
//   tlm scalenet-train --config configs/episodic.yaml --data train.json --skip 100
//       --max-samples 200 --output runs/scalenet.safetensors
#include <iostream>

#include <cxxopts.hpp>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/learn/scalenet_job.h"
#include "launch/adapt_recipe.h"
#include "launch/commands.h"
#include "launch/setting_bounds.h"

namespace tlm {

int run_scalenet_train(int argc, char** argv) {
  cxxopts::Options options(
      "tlm scalenet-train",
      "Train ScaleNet (per-layer, per-step step sizes of episodic adaptation) by first-order unrolled\n"
      "optimisation on records with reference answers; writes a safetensors file for\n"
      "`tlm adapt --config configs/episodic.yaml --scalenet FILE`.");
  ScaleNetTrainOptions t;
  options.add_options("ScaleNet")
      ("config", "YAML recipe: the episodic settings (flags below override its keys)", cxxopts::value<std::string>())
      ("output", "the trained net (.safetensors)", cxxopts::value<std::string>())
      ("log", "per-record JSONL (default <output>.log.jsonl)", cxxopts::value<std::string>())
      ("init", "continue training this net", cxxopts::value<std::string>())
      ("skip", "usable records skipped first (train on a later slice than the evaluation)",
       cxxopts::value<int64_t>()->default_value("0"))
      ("epochs", "passes over the records", cxxopts::value<int64_t>()->default_value("1"))
      ("scalenet-lr", "AdamW learning rate of the net", cxxopts::value<double>()->default_value("1e-4"))
      ("scalenet-max-grad-norm", "clip the net's gradient to this norm (0: off)",
       cxxopts::value<double>()->default_value("1.0"))
      ("max-answer-tokens", "gold answer tokens the outer NLL reads", cxxopts::value<int64_t>()->default_value("64"))
      ("scalenet-seed", "seed of the net's first layer", cxxopts::value<uint64_t>()->default_value("0"))
      ("h,help", "this help");
  add_recipe_flags(options);
  auto parsed = options.parse(argc, argv);
  if (parsed.count("help")) {
    std::cout << options.help({"ScaleNet", "Recipe overrides"}) << std::endl;
    return 0;
  }
  TLM_CHECK(parsed.count("output"), "--output FILE.safetensors is required");
  t.output = parsed["output"].as<std::string>();
  if (parsed.count("log")) t.log = parsed["log"].as<std::string>();
  if (parsed.count("init")) t.init = parsed["init"].as<std::string>();
  t.skip = bounded_flag<int64_t>(parsed, "skip", "scalenet.skip");
  t.epochs = bounded_flag<int64_t>(parsed, "epochs", "scalenet.epochs");
  t.lr = bounded_flag<double>(parsed, "scalenet-lr", "scalenet.lr");
  t.max_grad_norm = bounded_flag<double>(parsed, "scalenet-max-grad-norm", "scalenet.max_grad_norm");
  t.max_answer_tokens = bounded_flag<int64_t>(parsed, "max-answer-tokens", "scalenet.max_answer_tokens");
  t.seed = parsed["scalenet-seed"].as<uint64_t>();
  AdaptRecipe recipe = load_adapt_recipe(parsed.count("config") ? parsed["config"].as<std::string>() : "", parsed);
  TLM_CHECK(recipe.adapt.mode == AdaptMode::Episodic, "tlm scalenet-train trains the step sizes of mode episodic; "
            "give --config configs/episodic.yaml (or --mode episodic)");
  LoadedModel m = load_model(recipe.model);
  train_scalenet(*m.model, *m.encoder, recipe.adapt, t, m.grid);
  return 0;
}

}  // namespace tlm
