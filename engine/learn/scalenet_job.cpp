#include "engine/learn/scalenet_job.h"

#include <chrono>
#include <fstream>

#include <ATen/ATen.h>

#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/learn/adamw.h"
#include "engine/learn/job_steps.h"
#include "engine/learn/scalenet_training.h"
#include "engine/model/llama_model.h"

namespace tlm {
namespace {

// The usable records after the first `skip`, with their encoded reference answers.
std::vector<ScaleNetExample> load_examples(const AdaptConfig& config, const PromptEncoder& encoder,
                                           const ProcessGrid& grid, const ScaleNetTrainOptions& options) {
  AdaptConfig c = config;
  if (c.max_samples > 0) c.max_samples += options.skip;
  const JobSamples job = load_job_samples(c, encoder, grid);
  std::vector<ScaleNetExample> out;
  int64_t no_reference = 0;
  for (size_t i = static_cast<size_t>(options.skip); i < job.samples.size(); ++i) {
    const Sample& s = job.samples[i];
    if (!s.record.reference) {
      ++no_reference;
      continue;
    }
    ScaleNetExample e{s.ids, encoder.encode_continuation(*s.record.reference)};
    if (static_cast<int64_t>(e.answer.size()) > options.max_answer_tokens)
      e.answer.resize(static_cast<size_t>(options.max_answer_tokens));
    if (!e.answer.empty()) out.push_back(std::move(e));
  }
  if (no_reference > 0) log_warn(str_cat(config.data, ": ", no_reference, " records without a reference answer skipped"));
  TLM_CHECK(!out.empty(), config.data, ": no record with a reference answer after skipping ", options.skip,
            " (ScaleNet learns from gold answers)");
  return out;
}

ScaleNet make_net(const LoraAdapters& lora, const LlamaModel& model, const AdaptConfig& config,
                  const ScaleNetTrainOptions& options) {
  std::vector<std::string> modules;
  for (const Projection& p : lora.modules()) modules.push_back(p.name);
  if (options.init.empty())
    return ScaleNet({model.config().hidden_size, modules, 128, config.episodic_steps, config.learning_rate},
                    options.seed, model.device());
  ScaleNet net = ScaleNet::load(options.init, model.device());
  TLM_CHECK(net.shape().modules == modules && net.shape().hidden_size == model.config().hidden_size, options.init,
            ": the net was built for other LoRA modules or another hidden size than this job's");
  return net;
}

}  // namespace

nlohmann::json train_scalenet(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                              const ScaleNetTrainOptions& options, const ProcessGrid& grid) {
  const auto start = std::chrono::steady_clock::now();
  TLM_CHECK(grid.dp_size == 1, "tlm scalenet-train runs on one replica (TP allowed), not dp ", grid.dp_size);
  TLM_CHECK(!options.output.empty(), "tlm scalenet-train: give --output FILE.safetensors");
  TLM_CHECK(options.epochs >= 1 && options.lr > 0 && options.skip >= 0 && options.max_answer_tokens >= 1,
            "scalenet-train: epochs, lr and max answer tokens must be positive, skip >= 0");
  const std::vector<ScaleNetExample> examples = load_examples(config, encoder, grid, options);
  at::manual_seed(config.lora.seed);
  LoraAdapters lora(model, config.lora);
  EpisodicAdapter episodes(model, lora, {config.episodic_steps, config.learning_rate});
  ScaleNet net = make_net(lora, model, config, options);
  AdamW optimizer(net.parameters(), AdamWOptions{});
  const ScaleNetStepSizes sizes(net);
  const std::string log_path = options.log.empty() ? options.output + ".log.jsonl" : options.log;
  std::ofstream log_file;
  if (grid.is_root()) {
    log_file.open(log_path, std::ios::trunc);
    TLM_CHECK(log_file.good(), log_path, ": cannot write the training log");
  }
  log_info(str_cat("scalenet-train on ", examples.size(), " records of ", config.data, " (after skipping ",
                   options.skip, "): ", lora.modules().size(), " LoRA modules, K ", config.episodic_steps,
                   ", inner lr ", config.learning_rate, ", AdamW ", options.lr, " x ", options.epochs, " epochs"));
  std::vector<double> epoch_nll;
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    double total = 0;
    for (size_t i = 0; i < examples.size(); ++i) {
      const EpisodeGradient ep = scalenet_episode(model, episodes, sizes, examples[i]);
      optimizer.zero_grad();
      accumulate_scalenet_gradient(net, ep);
      const double grad_norm = clip_grad_norm(net.parameters(), options.max_grad_norm);
      optimizer.step(options.lr);
      total += ep.outer_nll;
      const at::Tensor m = at::stack(ep.trace.multipliers).to(at::kCPU);
      const nlohmann::json line = {{"epoch", epoch}, {"record", i}, {"outer_nll", ep.outer_nll},
                                   {"inner_nll_first", ep.inner_nll_first}, {"inner_nll_last", ep.inner_nll_last},
                                   {"multiplier_mean", m.mean().item<double>()},
                                   {"multiplier_min", m.min().item<double>()}, {"multiplier_max", m.max().item<double>()},
                                   {"grad_norm", grad_norm}};
      if (log_file.is_open()) log_file << line.dump() << "\n" << std::flush;
      if ((i + 1) % 10 == 0 || i + 1 == examples.size())
        log_info(str_cat("epoch ", epoch + 1, ": ", i + 1, "/", examples.size(), " records, mean outer NLL ",
                         fixed(total / static_cast<double>(i + 1), 4), ", multipliers ", fixed(m.min().item<double>(), 3),
                         "..", fixed(m.max().item<double>(), 3)));
    }
    epoch_nll.push_back(total / static_cast<double>(examples.size()));
  }
  if (grid.is_root()) net.save(options.output);
  const nlohmann::json summary = {{"records", examples.size()}, {"skip", options.skip}, {"epochs", options.epochs},
                                  {"mean_outer_nll_per_epoch", epoch_nll}, {"output", options.output},
                                  {"log", log_path}, {"wall_seconds", seconds_since(start)}};
  log_info(str_cat("scalenet saved to ", options.output, " (", summary.dump(), ")"));
  return summary;
}

}  // namespace tlm
