// An adaptation run from prompts to outputs, online or offline (ARCHITECTURE.md section 1):
//   online : for each chunk of `stream_batch` prompts, answer them with the current adapter,
//            then train on them (ce from the current model, constant lr, a fresh optimiser
//            per chunk by default, as the official code does);
//   offline: score every prompt with the adapters off, train one pass (cosine with 10%
//            warmup), then answer every prompt with the adapted model.
// Writes predictions.jsonl, metrics.jsonl, summary.json and the adapter (PEFT format).
// Under a process grid every rank calls it: DP replicas take contiguous blocks of each chunk
// and step batch (generation, scoring, training), TP ranks of a replica work in lockstep,
// and rank 0 writes every output in stream order.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/process_grid.h"
#include "engine/learn/adapt_config.h"
#include "engine/learn/job_setup.h"
#include "engine/learn/job_steps.h"
#include "engine/learn/lr_schedule.h"
#include "engine/learn/memory_report.h"
#include "engine/learn/run_outputs.h"

namespace tlm {

class LlamaModel;
class PromptEncoder;

// One online or offline job. The constructor does everything before the first step: reads
// and encodes the stream, builds the trainable set, the objective, the learner (with EATA's
// Fisher regulariser when asked), the checkpoint identity, and, with --resume, restores the
// checkpoint (trainables, moments, step and stream position, the method's and the guards'
// state, every rank's generators) before opening the outputs consistently with it. run() then
// runs the schedule and writes the adapter and the summary. What a stopped job needs to
// continue is in its checkpoints (engine/learn/job_checkpoints.h).
class AdaptJob {
 public:
  AdaptJob(LlamaModel& model, const PromptEncoder& encoder, const AdaptConfig& config, std::string model_path,
           const ProcessGrid& grid);
  ~AdaptJob();
  // Returns the summary (also written to summary.json); {"stopped": true, ...} when a signal
  // stopped the job (after its checkpoint).
  nlohmann::json run();

 private:
  bool online() const;
  const std::vector<Sample>& samples() const { return job_.samples; }
  ResumePoint resume();
  void open_outputs(const ResumePoint& point);
  bool run_online();   // false: stopped by a signal
  bool run_offline();
  void check_resumed_schedule(const LrSchedule& schedule, int64_t k, size_t from) const;
  bool train(const LrSchedule& schedule, size_t begin, size_t end, const std::vector<double>& selection_ce, int64_t& k);
  bool answer_range(size_t begin, size_t end);  // false: stopped by a signal, nothing written
  nlohmann::json finish();
  nlohmann::json stopped();

  LlamaModel& model_;
  const PromptEncoder& encoder_;
  const AdaptConfig& config_;
  std::string model_path_;
  const ProcessGrid& grid_;
  std::chrono::steady_clock::time_point start_;
  JobSamples job_;
  int32_t pad_ = 0;
  std::unique_ptr<MemoryMeter> memory_;
  std::unique_ptr<TrainableSet> trainable_;
  std::unique_ptr<TestTimeLearner> learner_;
  std::shared_ptr<const FisherRegulariser> fisher_;
  nlohmann::json method_;
  CheckpointIdentity identity_;
  std::string stream_identity_;
  std::unique_ptr<JobCheckpoints> checkpoints_;
  RestoredJob resumed_;
  std::unique_ptr<RunOutputs> outputs_;
  std::unique_ptr<CollapseGuards> guards_;
  std::vector<std::string> predictions_;
  std::vector<std::vector<int32_t>> answer_ids_;  // objectives on generated tokens: per sample
  int64_t samples_seen_ = 0;
  double generate_seconds_ = 0, train_seconds_ = 0;
};

// Returns the summary (also written to summary.json).
nlohmann::json run_adaptation(LlamaModel& model, const PromptEncoder& encoder,
                              const AdaptConfig& config, const std::string& model_path,
                              const ProcessGrid& grid = single_process_grid());

}  // namespace tlm
