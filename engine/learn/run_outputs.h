// The files an adaptation run writes in its output directory:
//   predictions.jsonl  {"index", "prompt", "predict", "label"?}   one per answered prompt
//   metrics.jsonl      one per optimiser step: ce per sample, selected, coeff, loss, lr, ...
//   summary.json       counts, timings, perplexities and metrics of the whole run
// plus the progress line in the log.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/data/prompt_record.h"
#include "engine/learn/test_time_learner.h"

namespace tlm {

// Where a resumed job picks its files up: the lines consistent with its checkpoint.
struct ResumePoint {
  int64_t predictions = 0;
  int64_t steps = 0;
  int64_t keep_predictions_from = 0;  // kept_predictions() holds the kept lines from this one on
};

class RunOutputs {
 public:
  // Only the `writer` (rank 0 of a distributed job) creates and writes files and logs
  // progress; every rank keeps the counters.
  RunOutputs(const std::string& directory, int64_t total_samples, bool writer = true);
  // Resuming: keeps the first resume.predictions / resume.steps lines of the existing files (a
  // crash may have left more), appends after them, restores the counters from the kept steps.
  // The files are streamed, not held. `total_samples` 0: an unbounded stream.
  RunOutputs(const std::string& directory, int64_t total_samples, bool writer, const ResumePoint& resume);
  // The answers kept by a resumed job from line resume.keep_predictions_from on, in stream
  // order, and their token ids where the lines carry them ("predict_ids"; empty otherwise).
  const std::vector<std::string>& kept_predictions() const { return kept_predictions_; }
  const std::vector<std::vector<int32_t>>& kept_prediction_ids() const { return kept_prediction_ids_; }

  // `ids`: the answer's token ids, written as "predict_ids" when given (methods that learn
  // from the generated tokens need them back on resume).
  void write_prediction(const PromptRecord& record, const std::string& prediction,
                        const std::vector<int32_t>* ids = nullptr);
  void write_step(const StepRecord& step, int64_t samples_seen);
  // "samples 40/300 (13%) | selected 62% | mean ce 3.41 | 812 tok/s | ETA 5m12s"
  void log_progress(int64_t samples_done) const;
  void write_summary(const nlohmann::json& summary) const;

  const std::string& directory() const { return directory_; }
  int64_t selected() const { return selected_; }
  int64_t trained() const { return trained_; }
  double mean_ce() const { return trained_ ? ce_sum_ / static_cast<double>(trained_) : 0.0; }
  double train_tokens_per_second() const;
  int64_t train_tokens() const { return train_tokens_; }

 private:
  std::string directory_;
  int64_t total_;
  bool writer_;
  std::ofstream predictions_;
  std::ofstream metrics_;
  std::chrono::steady_clock::time_point start_;
  int64_t selected_ = 0;
  int64_t trained_ = 0;
  double ce_sum_ = 0.0;
  int64_t train_tokens_ = 0;
  double train_seconds_ = 0.0;
  std::vector<std::string> kept_predictions_;
  std::vector<std::vector<int32_t>> kept_prediction_ids_;
};

}  // namespace tlm
