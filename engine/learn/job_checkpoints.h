// Periodic HDF5 checkpoints of an adaptation job (checkpoints/adapter_checkpoint.h): every
// `every_steps` optimiser steps the full-size adapter and AdamW moments are assembled over
// TP (a collective on every rank), rank 0 writes DIR/step-<k>.h5 atomically and keeps the
// newest `keep_last`. A job resumes from one (online mode): adapter, moments, step counts,
// statistics and stream offset come back exactly.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "checkpoints/adapter_checkpoint.h"
#include "dist/process_grid.h"
#include "engine/learn/test_time_learner.h"

namespace tlm {

struct CheckpointOptions {
  std::string directory;       // empty: no checkpoints
  int64_t every_steps = 0;     // 0: only the final one
  double every_seconds = 0;    // also when this long has passed since the last save; 0: off
  int64_t keep_last = 3;       // 0: keep all (pruned by listing the folder, older runs' included)
  bool fresh = false;          // a new job deletes the checkpoints it finds (--checkpoint-fresh)
  double pause_before_rename = 0;  // test hook (--checkpoint-pause-before-rename): seconds
};

class CollapseGuards;

class JobCheckpoints {
 public:
  // `objective`: the method whose own state the checkpoints carry (may be null: none).
  JobCheckpoints(CheckpointOptions options, CheckpointIdentity identity, std::string stream_identity,
                 const ProcessGrid& grid, const Objective* objective = nullptr);

  bool enabled() const { return !options_.directory.empty(); }
  // Before the first step (rank 0 looks): removes temporary files that killed saves left
  // behind, and makes sure a new job (not `resuming`) does not write into a folder that holds
  // checkpoints: refused, naming the newest one's stream, method and base when they are another
  // job's, or pointing at --resume latest when they are this job's; deleted with options.fresh.
  void claim_directory(bool resuming) const;
  // The job's collapse guards, whose state and per-step stats the checkpoints carry (null: none).
  void set_guards(const CollapseGuards* guards) { guards_ = guards; }
  // Records the step's statistics; saves when the step count reaches a multiple of every_steps.
  // `scheduler_state` is the learning-rate schedule and the position after this step (JSON).
  void after_step(const StepRecord& step, int64_t samples_consumed, const std::string& scheduler_state,
                  TrainableSet& trainable, AdamW& optimizer);
  // The checkpoint at the end of the job (skipped when the last step already saved one).
  void finish(int64_t samples_consumed, int64_t steps, TrainableSet& trainable, AdamW& optimizer);
  // Continues the statistics and the random generators of a resumed job: each rank its own
  // when the checkpoint was saved by as many ranks, else rank 0's on every rank (logged).
  void restore(const CheckpointState& state, const std::string& source);
  // True on every rank when any rank was asked to stop (SIGTERM/SIGINT): a collective.
  bool stop_agreed() const;

 private:
  void save(int64_t step, int64_t samples_consumed, TrainableSet& trainable, AdamW& optimizer);

  CheckpointOptions options_;
  CheckpointIdentity identity_;
  std::string stream_identity_;
  const ProcessGrid& grid_;
  const Objective* objective_ = nullptr;
  const CollapseGuards* guards_ = nullptr;
  std::map<std::string, std::vector<double>> stats_;
  int64_t last_saved_step_ = -1;
  std::string scheduler_state_ = "{}";
  std::chrono::steady_clock::time_point last_save_time_ = std::chrono::steady_clock::now();
};

// The generators LoRA dropout draws from, as hex bytes: the default CPU generator and, for a
// job on an accelerator, that device's default generator (CUDA's Philox seed and offset).
struct RngState {
  std::string cpu;
  std::string device_kind;  // "cuda", or "" for a CPU job
  std::string device;
};
RngState capture_rng_state(const c10::Device& device);
// Restores what `state` holds for `device`. A checkpoint from a CPU job resumed on a GPU (or
// the other way round) restores the CPU generator only and says so in the log: the run stays
// correct, only its dropout draws differ from the uninterrupted run on the other device.
void restore_rng_state(const RngState& state, const c10::Device& device, const std::string& source);

// Set from a signal handler (async-signal-safe): the job finishes its step, checkpoints, exits.
void request_stop();
// True on every rank of `group` when any of them was asked to stop: a collective (none for a
// group of one). What generation asks between decode steps: the TP group decodes in step.
bool stop_requested_in(Communicator& group);

// The checkpoints step-<k>.h5 in `directory` (none when it does not exist), oldest first.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& directory);

// The checkpoint to resume from: `spec` is a file, or "latest" (the newest file in `directory`
// that verifies; the ones skipped and why are logged). Throws when none qualifies.
std::string find_resume_checkpoint(const std::string& spec, const std::string& directory);

// Puts the checkpoint's full-size adapter and AdamW moments into this rank's slices and sets
// the optimiser step. Refuses (naming both values) a checkpoint of another base model config
// (unless `ignore_base_mismatch`, which says so in the log), LoRA rank, alpha or targets, or
// another stream; tensors that do not fit the model are refused with module and shapes.
void apply_checkpoint(const CheckpointState& state, const CheckpointIdentity& expected,
                      const std::string& stream_identity, TrainableSet& trainable, AdamW& optimizer,
                      const std::string& path, bool ignore_base_mismatch = false);

}  // namespace tlm
