#include "engine/learn/job_steps.h"

#include <algorithm>
#include <cstring>

#include <ATen/ATen.h>

#include "dist/gather_objects.h"
#include "dist/shard.h"
#include "engine/common/error.h"
#include "dist/fault_injection.h"
#include "engine/common/log.h"
#include "engine/learn/guards.h"
#include "engine/learn/job_checkpoints.h"
#include "engine/learn/lr_schedule.h"
#include "engine/learn/test_time_learner.h"
#include "engine/generate/prompt_encoder.h"
#include "engine/metrics/exact_match.h"
#include "engine/metrics/rouge.h"
#include "engine/model/llama_model.h"

namespace tlm {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::vector<Sample> encode_records(const std::vector<PromptRecord>& records,
                                   const PromptEncoder& encoder, Counters& counters, bool report) {
  std::vector<Sample> out;
  for (const PromptRecord& r : records) {
    EncodedPrompt e = encoder.encode(r.prompt);
    if (e.ids.size() < 2) {
      if (report) log_warn(str_cat(r.source, ":", r.line, ": skipped record: prompt encodes to ", e.ids.size(),
                       " token(s), no next-token target"));
      ++counters.too_short;
      continue;
    }
    if (e.truncated) ++counters.truncated;
    out.push_back({r, std::move(e.ids)});
  }
  return out;
}

JobSamples load_job_samples(const AdaptConfig& config, const PromptEncoder& encoder, const ProcessGrid& grid) {
  TLM_CHECK(!config.data.empty(), "no data file given (--data or `data:` in the recipe)");
  JobSamples job;
  job.set = read_prompt_file(config.data, config.data_options);
  for (const SkippedRecord& s : job.set.skips.records)
    if (grid.is_root()) log_warn(str_cat(s.source, ":", s.line, ": skipped record: ", s.reason));
  if (config.max_samples > 0 && static_cast<int64_t>(job.set.records.size()) > config.max_samples)
    job.set.records.resize(static_cast<size_t>(config.max_samples));
  job.samples = encode_records(job.set.records, encoder, job.counters, grid.is_root());
  TLM_CHECK(!job.samples.empty(), config.data, ": no usable prompt (", job.set.skips.total(),
            " bad records, ", job.counters.too_short, " too short)");
  job.pad = encoder.tokenizer().pad_id().value_or(0);
  return job;
}

std::vector<std::vector<int32_t>> ids_of(const std::vector<Sample>& samples, size_t begin, size_t end) {
  std::vector<std::vector<int32_t>> out;
  for (size_t i = begin; i < end; ++i) out.push_back(samples[i].ids);
  return out;
}

// This data-parallel replica's contiguous block of [begin, end) (balanced_range).
std::pair<size_t, size_t> replica_block(size_t begin, size_t end, const ProcessGrid& grid) {
  const ShardRange r = balanced_range(static_cast<int64_t>(end - begin), grid.dp_rank, grid.dp_size);
  return {begin + static_cast<size_t>(r.begin), begin + static_cast<size_t>(r.end)};
}

std::string pack_ids(const std::vector<int32_t>& ids) {
  return std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
}
std::vector<int32_t> unpack_ids(const std::string& bytes) {
  std::vector<int32_t> ids(bytes.size() / sizeof(int32_t));
  std::memcpy(ids.data(), bytes.data(), ids.size() * sizeof(int32_t));
  return ids;
}

// Answers samples[begin, end): each replica generates its block, the answers are gathered in
// stream order, rank 0 writes them. With `answer_ids` (methods that learn from the generated
// tokens) every rank also gets each answer's token ids, indexed like samples, and the
// predictions carry them.
bool answer(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
            const ProcessGrid& grid, const std::vector<Sample>& samples, size_t begin, size_t end,
            RunOutputs& outputs, std::vector<std::string>& predictions,
            std::vector<std::vector<int32_t>>* answer_ids) {
  const auto [lb, le] = replica_block(begin, end, grid);
  std::vector<std::string> local, local_ids;
  const size_t step = static_cast<size_t>(config.generation_batch);
  GenerationOptions options = config.generation;
  options.should_stop = [&grid] { return stop_requested_in(*grid.host_tp); };
  bool interrupted = false;
  for (size_t b = lb; b < le && !interrupted; b += step) {
    const size_t e = std::min(le, b + step);
    std::vector<Generation> gens = generate(model, ids_of(samples, b, e), options);
    for (const Generation& g : gens) {
      interrupted |= g.interrupted;
      local.push_back(encoder.tokenizer().decode(g.ids, /*skip_special=*/true));
      local_ids.push_back(pack_ids(g.ids));
    }
    interrupted |= stop_requested_in(*grid.host_tp);
  }
  // Replicas answer different prompts (their decode steps differ): they agree here, once.
  if (any_rank(interrupted, *grid.host_world)) return false;
  std::vector<std::string> all = all_gather_strings(local, grid.host_dp);
  TLM_CHECK(all.size() == end - begin, "answer: gathered ", all.size(), " answers for ", end - begin,
            " prompts");
  std::vector<std::string> all_ids;
  if (answer_ids) all_ids = all_gather_strings(local_ids, grid.host_dp);
  for (size_t i = begin; i < end; ++i) {
    if (answer_ids) (*answer_ids)[i] = unpack_ids(all_ids[i - begin]);
    outputs.write_prediction(samples[i].record, all[i - begin], answer_ids ? &(*answer_ids)[i] : nullptr);
    predictions.push_back(std::move(all[i - begin]));
  }
  return true;
}

// Input ce of every sample, each replica scoring its block.
std::vector<double> score_all(const LlamaModel& model, const std::vector<Sample>& samples,
                              const AdaptConfig& config, const ProcessGrid& grid, int32_t pad) {
  const auto [lb, le] = replica_block(0, samples.size(), grid);
  std::vector<double> local;
  if (le > lb) local = mean_token_nll(model, ids_of(samples, lb, le), config.score_batch, pad);
  return all_gather_doubles(local, grid.host_dp);
}

ContinuationNll answer_nll_all(const LlamaModel& model, const std::vector<std::vector<int32_t>>& prompts,
                               const std::vector<std::vector<int32_t>>& answers,
                               const AdaptConfig& config, const ProcessGrid& grid, int32_t pad) {
  const auto [lb, le] = replica_block(0, prompts.size(), grid);
  ContinuationNll local;
  if (le > lb) {
    local = continuation_nll(model, {prompts.begin() + static_cast<long>(lb), prompts.begin() + static_cast<long>(le)},
                             {answers.begin() + static_cast<long>(lb), answers.begin() + static_cast<long>(le)},
                             config.score_batch, pad);
  }
  at::Tensor sums = at::tensor({local.nll_sum, static_cast<double>(local.tokens)}, at::kDouble);
  grid.host_dp->all_reduce(sums, ReduceOp::Sum);
  ContinuationNll out;
  out.nll_sum = sums[0].item<double>();
  out.tokens = static_cast<int64_t>(sums[1].item<double>());
  return out;
}

std::optional<ContinuationNll> answer_nll_of_references(const LlamaModel& model, const PromptEncoder& encoder,
                                                        const AdaptConfig& config, const ProcessGrid& grid,
                                                        const std::vector<Sample>& samples) {
  if (!config.answer_nll) return std::nullopt;
  std::vector<std::vector<int32_t>> prompts, answers;
  for (const Sample& s : samples) {
    if (!s.record.reference) continue;
    prompts.push_back(s.ids);
    answers.push_back(encoder.encode_continuation(*s.record.reference));
  }
  if (prompts.empty()) return std::nullopt;
  return answer_nll_all(model, prompts, answers, config, grid, encoder.tokenizer().pad_id().value_or(0));
}

void add_reference_metrics(nlohmann::json& summary, const std::vector<Sample>& samples,
                           const std::vector<std::string>& predictions,
                           const std::optional<ContinuationNll>& base_nll,
                           const std::optional<ContinuationNll>& adapted_nll) {
  std::vector<RougeScore> rouge;
  int64_t em_hits = 0, em_total = 0;
  for (size_t i = 0; i < samples.size() && i < predictions.size(); ++i) {
    if (!samples[i].record.reference) continue;
    const std::string& ref = *samples[i].record.reference;
    rouge.push_back(rouge_lsum(ref, predictions[i]));
    if (is_numeric_reference(ref)) {
      ++em_total;
      em_hits += gsm8k_exact_match(predictions[i], ref) ? 1 : 0;
    }
  }
  if (base_nll) {
    summary["answer_nll_base"] = base_nll->per_token();
    summary["answer_tokens"] = base_nll->tokens;
  }
  if (adapted_nll) summary["answer_nll_adapted"] = adapted_nll->per_token();
  if (!rouge.empty()) summary["rouge_lsum"] = mean_fmeasure(rouge);
  if (em_total > 0) summary["exact_match"] = static_cast<double>(em_hits) / static_cast<double>(em_total);
}

namespace {

struct StepInputs {
  std::vector<std::vector<int32_t>> sequences;
  std::vector<int64_t> scored_from, scored_to;
};

StepInputs step_inputs(const AdaptConfig& config, const std::vector<Sample>& samples,
                       const std::vector<std::vector<int32_t>>& answer_ids, size_t begin, size_t end) {
  StepInputs in;
  in.sequences = ids_of(samples, begin, end);
  if (!config.method.needs_generated_tokens()) return in;
  const size_t g = static_cast<size_t>(config.method.entropy.generated_tokens);
  for (size_t i = begin; i < end; ++i) {
    std::vector<int32_t>& seq = in.sequences[i - begin];
    const int64_t prompt = static_cast<int64_t>(seq.size());
    const std::vector<int32_t>& answer = answer_ids[i];
    const size_t take = std::min(g, answer.size());
    seq.insert(seq.end(), answer.begin(), answer.begin() + static_cast<long>(take));
    in.scored_from.push_back(prompt - 1);
    in.scored_to.push_back(prompt - 1 + static_cast<int64_t>(take));
  }
  return in;
}

}  // namespace

bool train_range(TestTimeLearner& learner, JobCheckpoints& checkpoints,
                 const AdaptConfig& config, const ProcessGrid& grid,
                 const LrSchedule& schedule, const std::vector<Sample>& samples, size_t begin, size_t end,
                 const std::vector<double>& selection_ce, const std::vector<std::vector<int32_t>>& answer_ids,
                 RunOutputs& outputs, CollapseGuards* guards, int64_t& samples_seen, int64_t& k,
                 const std::function<nlohmann::json(int64_t)>& position) {
  const size_t bs = static_cast<size_t>(config.train_batch_size);
  // A stop request is also honoured between a step's forward and backward passes.
  learner.set_stop_check([&] {
    fault_injection_point(config.fault, grid.world_rank, learner.steps(), FaultPhase::AfterForward);
    return checkpoints.stop_agreed();
  });
  struct ClearStopCheck {
    TestTimeLearner& learner;
    ~ClearStopCheck() { learner.set_stop_check(nullptr); }
  } clear{learner};
  for (size_t b = begin; b < end; b += bs, ++k) {
    const size_t e = std::min(end, b + bs);
    if (checkpoints.stop_agreed()) return false;
    const auto [lb, le] = replica_block(b, e, grid);
    std::vector<double> sel;
    if (!selection_ce.empty())
      sel.assign(selection_ce.begin() + static_cast<long>(lb), selection_ce.begin() + static_cast<long>(le));
    const StepInputs in = step_inputs(config, samples, answer_ids, lb, le);
    StepRecord rec = learner.train_step(in.sequences, schedule.lr(k), sel, in.scored_from, in.scored_to);
    if (rec.abandoned) return false;
    fault_injection_point(config.fault, grid.world_rank, learner.steps());
    samples_seen += static_cast<int64_t>(e - b);
    outputs.write_step(rec, samples_seen);
    if (guards) guards->after_step(rec);
    nlohmann::json scheduler = {{"kind", schedule_name(schedule.kind)}, {"base_lr", schedule.base_lr},
                                      {"total_steps", schedule.total_steps}, {"warmup_steps", schedule.warmup_steps},
                                      {"next_step", k + 1}};
    if (position) scheduler.update(position(samples_seen));
    checkpoints.after_step(rec, samples_seen, scheduler.dump(), learner.trainable(), learner.optimizer());
  }
  return true;
}


double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

}  // namespace tlm
