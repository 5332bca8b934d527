// The pieces every schedule of an adaptation job is made of (online and offline in
// adapt_job.cpp, episodic in episodic_job.cpp): the stream read and encoded, answers generated
// by the replicas and written in stream order, scoring, and the reference-based metrics of the
// summary (answer NLL, ROUGE-Lsum, exact match), computed in this one place.
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/process_grid.h"
#include "engine/data/prompt_stream.h"
#include "engine/generate/scoring.h"
#include "engine/learn/adapt_config.h"
#include "engine/learn/run_outputs.h"

namespace tlm {

class LlamaModel;
class PromptEncoder;
class TestTimeLearner;
class JobCheckpoints;
class CollapseGuards;
struct LrSchedule;

double seconds_since(std::chrono::steady_clock::time_point t);

// A prompt the job will learn from and answer: its record and its token ids.
struct Sample {
  PromptRecord record;
  std::vector<int32_t> ids;
};

struct Counters {
  int64_t too_short = 0;
  int64_t truncated = 0;
};

struct JobSamples {
  PromptSet set;                // the records read, and the skipped ones
  std::vector<Sample> samples;  // the usable ones, encoded (at most config.max_samples)
  Counters counters;
  int32_t pad = 0;
};

// Reads config.data, logs the skipped records (rank 0), keeps the first max_samples, encodes
// them; fails naming the file when nothing usable is left.
JobSamples load_job_samples(const AdaptConfig& config, const PromptEncoder& encoder, const ProcessGrid& grid);

// The records whose prompts encode to at least 2 tokens (a next-token target), encoded; the
// others counted in counters.too_short (and logged when `report`).
std::vector<Sample> encode_records(const std::vector<PromptRecord>& records, const PromptEncoder& encoder,
                                   Counters& counters, bool report);

std::vector<std::vector<int32_t>> ids_of(const std::vector<Sample>& samples, size_t begin, size_t end);
// This data-parallel replica's contiguous block of [begin, end) (balanced_range).
std::pair<size_t, size_t> replica_block(size_t begin, size_t end, const ProcessGrid& grid);
// Token ids as a string of their bytes (to travel with gathered answers) and back.
std::string pack_ids(const std::vector<int32_t>& ids);
std::vector<int32_t> unpack_ids(const std::string& bytes);

// Answers samples[begin, end): each replica generates its block, the answers are gathered in
// stream order, rank 0 writes them. With `answer_ids` (methods that learn from the generated
// tokens) every rank also gets each answer's token ids, indexed like samples, and the
// predictions carry them. A stop request (a signal) ends the generation between decode steps:
// then nothing is written and every rank returns false, the chunk to be answered again on resume.
bool answer(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config,
            const ProcessGrid& grid, const std::vector<Sample>& samples, size_t begin, size_t end,
            RunOutputs& outputs, std::vector<std::string>& predictions,
            std::vector<std::vector<int32_t>>* answer_ids);

// Input ce of every sample, each replica scoring its block.
std::vector<double> score_all(const LlamaModel& model, const std::vector<Sample>& samples,
                              const AdaptConfig& config, const ProcessGrid& grid, int32_t pad);

// The NLL sums of answer token ids given their prompts, each replica scoring its block, summed
// over DP.
ContinuationNll answer_nll_all(const LlamaModel& model, const std::vector<std::vector<int32_t>>& prompts,
                               const std::vector<std::vector<int32_t>>& answers,
                               const AdaptConfig& config, const ProcessGrid& grid, int32_t pad);
// The reference answers' NLL under the model as it is now, over the samples that carry a
// reference; nullopt when none does or config.answer_nll is off.
std::optional<ContinuationNll> answer_nll_of_references(const LlamaModel& model, const PromptEncoder& encoder,
                                                        const AdaptConfig& config, const ProcessGrid& grid,
                                                        const std::vector<Sample>& samples);
// summary: answer_nll_base / answer_nll_adapted / answer_tokens (when given), rouge_lsum and
// exact_match over the samples with a reference and an answer (predictions indexed like samples).
void add_reference_metrics(nlohmann::json& summary, const std::vector<Sample>& samples,
                           const std::vector<std::string>& predictions,
                           const std::optional<ContinuationNll>& base_nll,
                           const std::optional<ContinuationNll>& adapted_nll);

// Trains on samples[begin, end) in batches of config.train_batch_size. `k` counts the steps of
// the current schedule (its lr is schedule.lr(k)); `selection_ce` (offline) is indexed like
// samples; `answer_ids` (objectives on the generated tokens) too. Each step is written to the
// outputs, seen by the guards and offered to the checkpoints with the schedule's position and,
// when given, position(samples_seen) merged in (a stream job's place in its input). Returns
// false when the job was asked to stop (checked before every step, on every rank).
bool train_range(TestTimeLearner& learner, JobCheckpoints& checkpoints, const AdaptConfig& config,
                 const ProcessGrid& grid, const LrSchedule& schedule, const std::vector<Sample>& samples,
                 size_t begin, size_t end, const std::vector<double>& selection_ce,
                 const std::vector<std::vector<int32_t>>& answer_ids, RunOutputs& outputs, CollapseGuards* guards,
                 int64_t& samples_seen, int64_t& k,
                 const std::function<nlohmann::json(int64_t)>& position = nullptr);

double mean(const std::vector<double>& v);

}  // namespace tlm
