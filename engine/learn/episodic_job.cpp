#include "engine/learn/episodic_job.h"

#include <chrono>
#include <cmath>
#include <optional>

#include <ATen/ATen.h>

#include "dist/gather_objects.h"
#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/learn/episodic.h"
#include "engine/learn/job_steps.h"
#include "engine/learn/memory_report.h"
#include "engine/model/llama_model.h"

namespace tlm {
namespace {

// What one replica's episodes of a chunk produced, flattened for the host gathers.
struct ChunkEpisodes {
  std::vector<std::string> answers;
  std::vector<double> nll;          // K + 1 per prompt
  std::vector<double> answer_nll;   // per prompt: nll sum, tokens (0, 0 without a reference)
  std::vector<double> seconds;
};

ChunkEpisodes run_block(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                        EpisodicAdapter& episodes, const StepSizes* sizes, const std::vector<Sample>& samples,
                        size_t begin, size_t end, int32_t pad) {
  ChunkEpisodes out;
  for (size_t i = begin; i < end; ++i) {
    const auto t = std::chrono::steady_clock::now();
    const std::vector<double> nll = episodes.adapt(samples[i].ids, sizes);
    out.nll.insert(out.nll.end(), nll.begin(), nll.end());
    if (config.generate) {
      const std::vector<Generation> g = generate(model, {samples[i].ids}, config.generation);
      out.answers.push_back(encoder.tokenizer().decode(g.at(0).ids, /*skip_special=*/true));
    }
    ContinuationNll a;
    if (config.answer_nll && samples[i].record.reference)
      a = continuation_nll(model, {samples[i].ids}, {encoder.encode_continuation(*samples[i].record.reference)}, 1,
                           pad);
    out.answer_nll.push_back(a.nll_sum);
    out.answer_nll.push_back(static_cast<double>(a.tokens));
    episodes.reset();
    out.seconds.push_back(seconds_since(t));
  }
  return out;
}

}  // namespace

nlohmann::json run_episodic(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                            const std::string& model_path, const ProcessGrid& grid) {
  const auto start = std::chrono::steady_clock::now();
  TLM_CHECK(config.resume.empty(), "--resume: an episodic job keeps no state between prompts; rerun it");
  TLM_CHECK(config.method.name == "tlm", "mode episodic minimises the prompt NLL; method '", config.method.name,
            "' is not available in it yet");
  const JobSamples job = load_job_samples(config, encoder, grid);
  const std::vector<Sample>& samples = job.samples;
  const MemoryMeter memory(grid.device);
  at::manual_seed(config.lora.seed);
  LoraAdapters lora(model, config.lora);
  EpisodicAdapter episodes(model, lora, {config.episodic_steps, config.learning_rate});
  std::optional<ScaleNet> net;
  std::optional<ScaleNetStepSizes> sizes;
  if (!config.scalenet.empty()) {
    net.emplace(ScaleNet::load(config.scalenet, model.device()));
    std::vector<std::string> modules;
    for (const Projection& p : lora.modules()) modules.push_back(p.name);
    TLM_CHECK(net->shape().modules == modules && net->shape().hidden_size == model.config().hidden_size,
              config.scalenet, ": the net was trained for other LoRA modules or another hidden size than this job's");
    if (net->shape().steps != config.episodic_steps || net->shape().lr != config.learning_rate)
      log_warn(str_cat(config.scalenet, ": trained for K ", net->shape().steps, " at lr ", net->shape().lr,
                       ", this job runs K ", config.episodic_steps, " at lr ", config.learning_rate));
    sizes.emplace(*net);
  }
  const size_t k1 = static_cast<size_t>(config.episodic_steps) + 1;
  RunOutputs outputs(config.output_dir, static_cast<int64_t>(samples.size()), grid.is_root());
  log_info(str_cat("episodic on ", samples.size(), " prompts from ", config.data, ": per prompt a fresh lora r=",
                   config.lora.rank, " alpha=", config.lora.alpha, ", ", config.episodic_steps, " steps at lr ",
                   config.learning_rate, sizes ? " x ScaleNet " + config.scalenet : std::string(), ", answer, reset"));
  std::vector<std::string> predictions;
  std::vector<double> adapted_ce;
  ContinuationNll adapted_answer;
  const size_t chunk = static_cast<size_t>(config.stream_batch);
  for (size_t b = 0; b < samples.size(); b += chunk) {
    const size_t e = std::min(samples.size(), b + chunk);
    const auto [lb, le] = replica_block(b, e, grid);
    const ChunkEpisodes local = run_block(model, encoder, config, episodes, sizes ? &*sizes : nullptr, samples, lb, le, job.pad);
    const std::vector<std::string> answers = all_gather_strings(local.answers, grid.host_dp);
    const std::vector<double> nll = all_gather_doubles(local.nll, grid.host_dp);
    const std::vector<double> answer_nll = all_gather_doubles(local.answer_nll, grid.host_dp);
    const std::vector<double> seconds = all_gather_doubles(local.seconds, grid.host_dp);
    TLM_CHECK(nll.size() == (e - b) * k1 && seconds.size() == e - b, "episodic: gathered ", seconds.size(),
              " episodes for ", e - b, " prompts");
    for (size_t i = b; i < e; ++i) {
      const size_t j = i - b;
      if (config.generate) {
        outputs.write_prediction(samples[i].record, answers.at(j));
        predictions.push_back(answers[j]);
      }
      StepRecord rec;
      rec.step = static_cast<int64_t>(i) + 1;
      rec.ce = {nll[j * k1]};
      rec.current_ce = {nll[j * k1 + k1 - 1]};
      rec.selected = {true};
      rec.coeff = {1.0};
      rec.loss = nll[j * k1];
      rec.lr = config.learning_rate;
      rec.updated = true;
      rec.tokens = static_cast<int64_t>(samples[i].ids.size()) * config.episodic_steps;
      rec.seconds = seconds[j];
      rec.extra["episode_nll"] = std::vector<double>(nll.begin() + static_cast<long>(j * k1),
                                                     nll.begin() + static_cast<long>((j + 1) * k1));
      outputs.write_step(rec, static_cast<int64_t>(i) + 1);
      adapted_ce.push_back(rec.current_ce[0]);
      adapted_answer.nll_sum += answer_nll[2 * j];
      adapted_answer.tokens += static_cast<int64_t>(answer_nll[2 * j + 1]);
    }
    outputs.log_progress(static_cast<int64_t>(e));
  }

  // Every episode reset the adapter, so the model now is the base.
  lora.set_enabled(false);
  const double base_ce = mean(score_all(model, samples, config, grid, job.pad));
  const std::optional<ContinuationNll> base_answer = answer_nll_of_references(model, encoder, config, grid, samples);
  lora.set_enabled(true);
  const double after_ce = mean(adapted_ce);
  nlohmann::json method = {{"mode", "episodic"}, {"method", sizes ? "episodic (ScaleNet)" : "episodic (fixed lr)"},
                           {"scalenet", sizes ? nlohmann::json(config.scalenet) : nlohmann::json(nullptr)}, {"lr", config.learning_rate},
                           {"episodic_steps", config.episodic_steps}, {"lora_rank", config.lora.rank},
                           {"lora_alpha", config.lora.alpha}, {"lora_targets", config.lora.targets},
                           {"max_new_tokens", config.generation.max_new_tokens}};
  nlohmann::json summary = {
      {"mode", "episodic"}, {"data", config.data}, {"model", model_path}, {"samples", samples.size()},
      {"steps", static_cast<int64_t>(samples.size()) * config.episodic_steps}, {"skipped_steps", 0},
      {"selected", outputs.selected()}, {"selected_fraction", 1.0},
      {"records_skipped", job.set.skips.to_json()}, {"records_too_short", job.counters.too_short},
      {"prompts_truncated", job.counters.truncated},
      {"input_ce_base", base_ce}, {"input_ce_adapted", after_ce},
      {"input_ppl_base", std::exp(base_ce)}, {"input_ppl_adapted", std::exp(after_ce)},
      {"input_ce_adapted_note", "each prompt under its own episode's adapter, after its K steps"},
      {"train_tokens_per_s", outputs.train_tokens_per_second()}, {"adapter", nullptr},
      {"layout", grid.describe()}, {"config", method}};
  add_reference_metrics(summary, samples, predictions, base_answer,
                        base_answer ? std::optional<ContinuationNll>(adapted_answer) : std::nullopt);
  summary["wall_seconds"] = seconds_since(start);
  summary["memory"] = memory.report(model, lora, nullptr, grid.host_world);
  outputs.write_summary(summary);
  log_info(str_cat("input perplexity ", fixed(std::exp(base_ce), 3), " -> ", fixed(std::exp(after_ce), 3),
                   " within the episodes; ", samples.size(), " episodes of ", config.episodic_steps, " steps"));
  return summary;
}

}  // namespace tlm
