#include "engine/learn/episodic_job.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <optional>

#include <ATen/ATen.h>

#include "dist/fault_injection.h"
#include "dist/gather_objects.h"
#include "engine/common/error.h"
#include "engine/common/log.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/learn/episodic.h"
#include "engine/learn/job_checkpoints.h"
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
  bool interrupted = false;  // stopped by a signal before the block's end
};

// Where the stream stands: prompts done and the running sums the summary needs (summed in
// stream order, so a resumed job's figures are bitwise the uninterrupted job's).
struct EpisodicProgress {
  int64_t done = 0;
  double adapted_ce_sum = 0.0;
  ContinuationNll adapted_answer;

  nlohmann::json to_json() const {
    return {{"samples_done", done}, {"adapted_ce_sum", adapted_ce_sum},
            {"answer_nll_sum", adapted_answer.nll_sum}, {"answer_tokens", adapted_answer.tokens}};
  }
};

nlohmann::json episodic_method(const AdaptConfig& config, bool scalenet) {
  return {{"mode", "episodic"}, {"method", scalenet ? "episodic (ScaleNet)" : "episodic (fixed lr)"},
          {"scalenet", scalenet ? nlohmann::json(config.scalenet) : nlohmann::json(nullptr)},
          {"lr", config.learning_rate}, {"episodic_steps", config.episodic_steps},
          {"lora_rank", config.lora.rank}, {"lora_alpha", config.lora.alpha}, {"lora_targets", config.lora.targets},
          {"max_new_tokens", config.generation.max_new_tokens}};
}

// --resume latest: the stopped job's summary.json in the output directory says how far it got
// (episodes are independent: no adapter or optimiser state carries over). Rank 0 reads it,
// every rank gets it.
EpisodicProgress resume_point(const AdaptConfig& config, const ProcessGrid& grid, const nlohmann::json& method,
                              int64_t samples) {
  TLM_CHECK(config.resume == "latest", "--resume ", config.resume, ": an episodic job resumes from its output "
            "directory (", config.output_dir, "), not from a checkpoint file: use --resume latest");
  const std::string path = config.output_dir + "/summary.json";
  std::vector<std::string> mine;
  if (grid.is_root()) {
    std::ifstream in(path);
    TLM_CHECK(in.good(), path, ": not found; --resume latest continues a stopped episodic job in its output directory");
    mine.push_back(std::string(std::istreambuf_iterator<char>(in), {}));
  }
  const std::vector<std::string> all = all_gather_strings(mine, grid.host_world);
  TLM_CHECK(all.size() == 1, "episodic resume: rank 0 sent ", all.size(), " summaries");
  const nlohmann::json s = nlohmann::json::parse(all[0], nullptr, /*allow_exceptions=*/false);
  TLM_CHECK(s.is_object(), path, ": not a JSON object");
  TLM_CHECK(s.value("stopped", false) && s.contains("episodic_progress"), path,
            ": not the summary of a stopped episodic job (it finished, or another mode wrote it); nothing to resume");
  TLM_CHECK(s.value("config", nlohmann::json()) == method, path, ": written by another episodic job (",
            s.value("config", nlohmann::json()).dump(), "); this one is ", method.dump());
  TLM_CHECK(s.value("data", std::string()) == config.data && s.value("samples", int64_t{-1}) == samples, path,
            ": its job read ", s.value("data", std::string()), " (", s.value("samples", int64_t{-1}),
            " prompts); this one reads ", config.data, " (", samples, " prompts)");
  const nlohmann::json& p = s["episodic_progress"];
  auto field = [&](const char* key, bool integer) -> const nlohmann::json& {
    TLM_CHECK(p.is_object() && p.contains(key), path, ": episodic_progress.", key, " is missing");
    const nlohmann::json& v = p.at(key);
    TLM_CHECK(integer ? v.is_number_integer() : v.is_number(), path, ": episodic_progress.", key, " must be ",
              integer ? "an integer" : "a number", ", got ", v.dump());
    return v;
  };
  EpisodicProgress out;
  out.done = field("samples_done", true).get<int64_t>();
  out.adapted_ce_sum = field("adapted_ce_sum", false).get<double>();
  out.adapted_answer.nll_sum = field("answer_nll_sum", false).get<double>();
  out.adapted_answer.tokens = field("answer_tokens", true).get<int64_t>();
  TLM_CHECK(out.done >= 0 && out.done <= samples, path, ": samples_done ", out.done, " of ", samples);
  return out;
}

// A stop request (SIGTERM, SIGINT, SIGUSR1) ends the block before its next episode or between
// decode steps; `interrupted` then says the block is incomplete.
ChunkEpisodes run_block(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                        const ProcessGrid& grid, EpisodicAdapter& episodes, const StepSizes* sizes,
                        const std::vector<Sample>& samples, size_t begin, size_t end, int32_t pad) {
  ChunkEpisodes out;
  GenerationOptions options = config.generation;
  options.should_stop = [&grid] { return stop_requested_in(*grid.host_tp); };
  for (size_t i = begin; i < end; ++i) {
    if (stop_requested_in(*grid.host_tp)) {
      out.interrupted = true;
      return out;
    }
    const auto t = std::chrono::steady_clock::now();
    const std::vector<double> nll = episodes.adapt(samples[i].ids, sizes);
    fault_injection_point(config.fault, grid.world_rank, static_cast<int64_t>(i) + 1);  // "step": the episode
    out.nll.insert(out.nll.end(), nll.begin(), nll.end());
    if (config.generate) {
      const std::vector<Generation> g = generate(model, {samples[i].ids}, options);
      if (g.at(0).interrupted) {
        episodes.reset();
        out.interrupted = true;
        return out;
      }
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

// Rank 0 writes a finished chunk: its answers and one metrics.jsonl line per prompt.
void write_chunk(const AdaptConfig& config, const ProcessGrid& grid, const ChunkEpisodes& local,
                 const std::vector<Sample>& samples, size_t b, size_t e, RunOutputs& outputs,
                 std::vector<std::string>& predictions, EpisodicProgress& progress) {
  const size_t k1 = static_cast<size_t>(config.episodic_steps) + 1;
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
    progress.adapted_ce_sum += rec.current_ce[0];
    progress.adapted_answer.nll_sum += answer_nll[2 * j];
    progress.adapted_answer.tokens += static_cast<int64_t>(answer_nll[2 * j + 1]);
  }
  progress.done = static_cast<int64_t>(e);
}

std::optional<ScaleNetStepSizes> load_step_sizes(const AdaptConfig& config, const LlamaModel& model,
                                                 const LoraAdapters& lora, std::optional<ScaleNet>& net) {
  if (config.scalenet.empty()) return std::nullopt;
  net.emplace(ScaleNet::load(config.scalenet, model.device()));
  std::vector<std::string> modules;
  for (const Projection& p : lora.modules()) modules.push_back(p.name);
  TLM_CHECK(net->shape().modules == modules && net->shape().hidden_size == model.config().hidden_size,
            config.scalenet, ": the net was trained for other LoRA modules or another hidden size than this job's");
  if (net->shape().steps != config.episodic_steps || net->shape().lr != config.learning_rate)
    log_warn(str_cat(config.scalenet, ": trained for K ", net->shape().steps, " at lr ", net->shape().lr,
                     ", this job runs K ", config.episodic_steps, " at lr ", config.learning_rate));
  return ScaleNetStepSizes(*net);
}

}  // namespace

nlohmann::json run_episodic(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
                            const std::string& model_path, const ProcessGrid& grid) {
  const auto start = std::chrono::steady_clock::now();
  TLM_CHECK(config.method.name == "tlm", "mode episodic minimises the prompt NLL; method '", config.method.name,
            "' is not available in it yet");
  const JobSamples job = load_job_samples(config, encoder, grid);
  const std::vector<Sample>& samples = job.samples;
  const int64_t n = static_cast<int64_t>(samples.size());
  const MemoryMeter memory(grid.device);
  at::manual_seed(config.lora.seed);
  LoraAdapters lora(model, config.lora);
  EpisodicAdapter episodes(model, lora, {config.episodic_steps, config.learning_rate});
  std::optional<ScaleNet> net;
  const std::optional<ScaleNetStepSizes> sizes = load_step_sizes(config, model, lora, net);
  const nlohmann::json method = episodic_method(config, sizes.has_value());
  EpisodicProgress progress;
  if (!config.resume.empty()) {
    progress = resume_point(config, grid, method, n);
    if (config.lora.dropout > 0 && grid.is_root())
      log_warn("--resume: LoRA dropout draws its masks from one generator over the episodes, so the resumed "
               "episodes draw other masks than an uninterrupted job would (each episode stays independent)");
  }
  const ResumePoint point{config.generate ? progress.done : 0, progress.done, 0};
  RunOutputs outputs = progress.done > 0 ? RunOutputs(config.output_dir, n, grid.is_root(), point)
                                         : RunOutputs(config.output_dir, n, grid.is_root());
  std::vector<std::string> predictions = outputs.kept_predictions();
  log_info(str_cat("episodic on ", n, " prompts from ", config.data, ": per prompt a fresh lora r=",
                   config.lora.rank, " alpha=", config.lora.alpha, ", ", config.episodic_steps, " steps at lr ",
                   config.learning_rate, sizes ? " x ScaleNet " + config.scalenet : std::string(), ", answer, reset",
                   progress.done > 0 ? str_cat("; resumed at prompt ", progress.done + 1) : std::string()));
  nlohmann::json summary = {{"mode", "episodic"}, {"data", config.data}, {"model", model_path}, {"samples", n},
                            {"config", method}, {"layout", grid.describe()}};
  const size_t chunk = static_cast<size_t>(config.stream_batch);
  for (size_t b = static_cast<size_t>(progress.done); b < samples.size(); b += chunk) {
    const size_t e = std::min(samples.size(), b + chunk);
    const auto [lb, le] = replica_block(b, e, grid);
    const ChunkEpisodes local =
        run_block(model, encoder, config, grid, episodes, sizes ? &*sizes : nullptr, samples, lb, le, job.pad);
    // Replicas run different episodes: they agree once per chunk whether to stop.
    if (any_rank(local.interrupted, *grid.host_world)) {
      log_info(str_cat("stopped by a signal after ", progress.done, " of ", n, " prompts (the episodes of the chunk "
                       "in progress are dropped); continue with --resume latest and the same --output-dir"));
      summary.update({{"stopped", true}, {"resumable", true}, {"episodic_progress", progress.to_json()},
                      {"wall_seconds", seconds_since(start)}});
      outputs.write_summary(summary);
      return summary;
    }
    write_chunk(config, grid, local, samples, b, e, outputs, predictions, progress);
    outputs.log_progress(static_cast<int64_t>(e));
  }

  // Every episode reset the adapter, so the model now is the base.
  lora.set_enabled(false);
  const double base_ce = mean(score_all(model, samples, config, grid, job.pad));
  const std::optional<ContinuationNll> base_answer = answer_nll_of_references(model, encoder, config, grid, samples);
  lora.set_enabled(true);
  const double after_ce = progress.adapted_ce_sum / static_cast<double>(n);
  summary.update({
      {"steps", n * config.episodic_steps}, {"skipped_steps", 0},
      {"selected", outputs.selected()}, {"selected_fraction", 1.0},
      {"records_skipped", job.set.skips.to_json()}, {"records_too_short", job.counters.too_short},
      {"prompts_truncated", job.counters.truncated},
      {"input_ce_base", base_ce}, {"input_ce_adapted", after_ce},
      {"input_ppl_base", std::exp(base_ce)}, {"input_ppl_adapted", std::exp(after_ce)},
      {"input_ce_adapted_note", "each prompt under its own episode's adapter, after its K steps"},
      {"train_tokens_per_s", outputs.train_tokens_per_second()}, {"adapter", nullptr}});
  add_reference_metrics(summary, samples, predictions, base_answer,
                        base_answer ? std::optional<ContinuationNll>(progress.adapted_answer) : std::nullopt);
  summary["wall_seconds"] = seconds_since(start);
  summary["memory"] = memory.report(model, lora, nullptr, grid.host_world);
  outputs.write_summary(summary);
  log_info(str_cat("input perplexity ", fixed(std::exp(base_ce), 3), " -> ", fixed(std::exp(after_ce), 3),
                   " within the episodes; ", n, " episodes of ", config.episodic_steps, " steps"));
  return summary;
}

}  // namespace tlm
