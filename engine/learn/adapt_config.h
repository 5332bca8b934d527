// Everything an adaptation job (`tlm adapt`) needs, filled from a YAML recipe and flags.
// Defaults are the official TLM settings (ARCHITECTURE.md section 1).
#pragma once

#include <cstdint>
#include <string>

#include "dist/fault_injection.h"
#include "engine/data/prompt_stream.h"
#include "engine/generate/generator.h"
#include "engine/learn/adamw.h"
#include "engine/learn/guards.h"
#include "engine/learn/job_checkpoints.h"
#include "engine/learn/lora.h"
#include "engine/learn/methods.h"
#include "engine/learn/norm_affine.h"
#include "engine/learn/test_time_learner.h"

namespace tlm {

enum class AdaptMode { Online, Offline, Episodic };

struct AdaptConfig {
  AdaptMode mode = AdaptMode::Online;
  std::string data;              // a prompt file; "-": standard input, read as an unbounded stream
  bool follow = false;           // data is a file that keeps growing (--follow): read as a stream
  PromptStreamOptions data_options;
  std::string output_dir = "runs/tlm";
  int64_t max_samples = 0;       // 0 = the whole stream
  int64_t stream_batch = 8;      // online: prompts per chunk
  int64_t train_batch_size = 1;
  double learning_rate = 5e-5;
  std::string lr_schedule;       // empty: constant online, cosine offline
  double warmup_ratio = -1.0;    // < 0: 0 online, 0.1 offline
  // Official online code: a fresh optimiser and schedule for every chunk (the adapter carries
  // over). false = one optimiser for the whole stream.
  bool fresh_optimizer_per_chunk = true;
  int64_t episodic_steps = 5;    // mode episodic: K gradient steps per prompt (at learning_rate)
  std::string scalenet;          // mode episodic: ScaleNet file for per-layer, per-step sizes
  StepOptions step;
  GuardOptions guards;           // collapse guards (all off by default)
  MethodSpec method;             // which objective, and its settings (method.tlm for TLM)
  TrainableKind trainable = TrainableKind::Lora;  // what trains: LoRA, or the RMSNorm weights
  std::vector<std::string> norm_targets = norm_target_names();  // trainable norm-affine
  LoraConfig lora;
  AdamWOptions adamw;
  GenerationOptions generation;  // max_new_tokens default 512, greedy
  int64_t generation_batch = 8;
  int64_t score_batch = 8;
  bool generate = true;          // false: adapt only (no predictions)
  bool answer_nll = true;        // summary: reference NLL under the base and adapted model
  std::string init_adapter;      // PEFT adapter directory to start from (parity tests, warm starts)
  CheckpointOptions checkpoints; // HDF5 checkpoints of the job
  std::string resume;            // "latest" (in checkpoints.directory) or a checkpoint file
  bool resume_ignore_base = false;  // load a checkpoint saved for another base model config
  FaultPlan fault;               // test hook (--fault-inject): a rank fails on purpose at a step

  std::string schedule_name() const;
  double warmup() const;
};

}  // namespace tlm
