// What an online or offline job builds before its first step (engine/learn/adapt_job.cpp and
// the stream job, engine/learn/stream_job.cpp): the trainable set, EATA's Fisher regulariser,
// the collapse guards, and the method's description for summary.json and the checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/process_grid.h"
#include "engine/learn/adapt_config.h"

namespace tlm {

class LlamaModel;
class PromptEncoder;
class Objective;
class TrainableSet;
class TestTimeLearner;
class FisherRegulariser;
class CollapseGuards;
class JobCheckpoints;
struct CheckpointIdentity;

// The method and its hyperparameters (summary.json "config", checkpoint "method").
nlohmann::json method_json(const AdaptConfig& config, const Objective& objective, const TrainableSet& trainable);
// "threshold 3, lambda 0.1" from an objective's spec: its hyperparameters, for the log.
std::string objective_summary(const nlohmann::json& spec);
// "lora r=8 alpha=16 on q_proj,v_proj" or "norm-affine on input_layernorm,...", for the log.
std::string trainable_summary(const TrainableSet& set);
// The lines of a text file; none when it does not exist.
std::vector<std::string> read_lines(const std::string& path);
// Optimiser steps over n samples in batches of `batch`.
int64_t steps_for(size_t n, int64_t batch);

// LoRA with the job's settings (from --init-adapter when given), or the norm weights.
std::unique_ptr<TrainableSet> make_trainable(LlamaModel& model, const AdaptConfig& config);
// EATA's Fisher regulariser from the reference prompts, or null when off.
std::shared_ptr<const FisherRegulariser> make_fisher(const AdaptConfig& config, const PromptEncoder& encoder,
                                                     const ProcessGrid& grid, const LlamaModel& model,
                                                     TrainableSet& trainable);
// The job's collapse guards, or null when none is on; the probe set read and encoded here.
std::unique_ptr<CollapseGuards> make_guards(const AdaptConfig& config, const PromptEncoder& encoder,
                                            const ProcessGrid& grid, LlamaModel& model,
                                            TestTimeLearner& learner, int32_t pad);

// What a job's checkpoints are saved for: this engine, the base model (path and config
// fingerprint), the layout and the method; a resume refuses another.
CheckpointIdentity job_identity(const LlamaModel& model, const std::string& model_path, const ProcessGrid& grid,
                                const nlohmann::json& method);

// What a checkpoint brought back for the parts of a job built after it.
struct RestoredJob {
  std::string path;                              // the checkpoint file
  int64_t steps = 0;                             // optimiser steps taken
  int64_t samples_consumed = 0;                  // prompts learned
  int64_t tp_at_save = 1;
  nlohmann::json scheduler;                      // the schedule and stream position after the last step
  std::map<std::string, at::Tensor> guard_state;  // the collapse guards' (without "guard.")
  std::map<std::string, std::vector<double>> stats;
};

// Resumes an online job from config.resume ("latest" in the checkpoint folder, or a file):
// the trainables and moments (refusing another base, adapter shape or stream), the step
// count, the statistics and generators, the objective's state; the rest is returned.
RestoredJob restore_job(const AdaptConfig& config, const CheckpointIdentity& identity,
                        const std::string& stream_identity, TestTimeLearner& learner, JobCheckpoints& checkpoints);

// The job's collapse guards (make_guards), continued from `restored` when the job resumed:
// their state, and guards.jsonl's events up to the checkpoint's step.
std::unique_ptr<CollapseGuards> open_guards(const AdaptConfig& config, const PromptEncoder& encoder,
                                            const ProcessGrid& grid, LlamaModel& model, TestTimeLearner& learner,
                                            int32_t pad, const RestoredJob& restored);

}  // namespace tlm
