// The adapters a server holds: the shared one ("tlm") and one per session ("tlm/<name>"),
// each with its own AdamW moments, objective state, learning queue and the chunk it is
// learning. The model has one set of live trainable tensors (LoRA A/B); a session's tensors
// are copied into them before its work and out after, so a session costs its adapter's size
// (a few MB), not a model. Published adapter states are immutable snapshots: a decoding
// batch keeps the snapshot its requests started with while the session learns on.
//
// Sessions beyond `max_sessions` are checkpointed and dropped, least recently used first, and
// reloaded from their folder when asked for again. Checkpoints are the adaptation job's HDF5
// files (checkpoints/adapter_checkpoint.h), one folder per session under the checkpoint
// folder ("shared", "session-<name>"); the learning queue and the chunk in progress travel in
// the file's scheduler_state, so a restart loses and repeats nothing.
//
// Collapse guards (guard.*, engine/learn/guards.h) watch each session's own history: one
// CollapseGuards over the live tensors, and per session its memory (last good state, loss
// average, event counts), lent to the guards for that session's steps and checkpointed with it
// as `tlm adapt` checkpoints its guards ("guard." method state and stats).
// Engine-thread only: not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "checkpoints/adapter_checkpoint.h"
#include "engine/learn/guards.h"
#include "engine/learn/test_time_learner.h"

namespace tlm {

using AdapterSnapshot = StateSnapshot;  // engine/learn/trainable_set.h

struct Session {
  std::string id;                  // "tlm" or "tlm/<name>"
  AdapterSnapshot params;          // the current adapter (trainable-set order)
  uint64_t version = 0;            // +1 per update
  std::vector<at::Tensor> exp_avg, exp_avg_sq;
  int64_t optimizer_step = 0;
  std::map<std::string, at::Tensor> objective_state;
  GuardMemory guards;              // its collapse guards' memory (when the server runs guards)
  int64_t steps = 0;               // optimiser steps taken or attempted
  int64_t learned = 0;             // prompts learned
  int64_t requests = 0;            // requests answered
  std::deque<std::vector<int32_t>> queue;        // answered, waiting for their chunk
  std::vector<std::vector<int32_t>> chunk;       // the chunk being learned
  size_t chunk_pos = 0;                          // its next prompt
  uint64_t last_used = 0;          // the store's use count at its last use (the same on every TP rank)
  bool dirty = false;              // changed since its last checkpoint
};

struct SessionStoreOptions {
  int64_t max_sessions = 64;       // in memory, the shared adapter included
  std::string checkpoint_dir;      // empty: sessions live in memory only
  int64_t keep_last = 3;           // checkpoints kept per session (0: all)
  bool writer = true;              // writes the files (under TP: rank 0; every rank assembles)
  // Under TP every rank must see the same sessions as changed (a save is collective): a write
  // that fails on rank 0 is reported, not retried, and the session counts as saved until it
  // changes again. Alone, a failed save leaves it changed, and the next checkpoint retries.
  bool replicated = false;
};

class SessionStore {
 public:
  // `guards`: the collapse guards over `trainable` and the learner's optimiser, or nullptr.
  SessionStore(TrainableSet& trainable, TestTimeLearner& learner, CheckpointIdentity identity,
               SessionStoreOptions options, CollapseGuards* guards = nullptr);

  // The session, created fresh (the initial adapter) or reloaded from its folder on first use;
  // may checkpoint and drop the least recently used one. Throws tlm::Error when the limit is
  // reached and there is no checkpoint folder to move a session to.
  Session& get(const std::string& id);
  Session* find(const std::string& id);
  // Every session known: in memory or in the checkpoint folder.
  std::vector<std::string> ids() const;
  const std::map<std::string, Session>& in_memory() const { return sessions_; }

  // Puts a snapshot into the live tensors (no-op when it already is there).
  void load_live(const AdapterSnapshot& params);
  // Live tensors, moments, step counts and objective state become the session's, for a step.
  void begin_step(Session& s);
  // Between begin_step and end_step: the guards' verdict on the step just taken, with the
  // session's memory (may reset or roll back the live tensors and moments). None without guards.
  std::vector<GuardEvent> guard_step(Session& s, const StepRecord& step);
  // The step's results become the session's: a new snapshot (version + 1) when the live
  // tensors changed (an update, or a guard's reset or rollback).
  void end_step(Session& s, bool changed);
  // The live tensors hold nothing known (a step failed half-way): the next use reloads them.
  void invalidate_live() { live_ = nullptr; }
  // A fresh optimiser for the session (the official online rule: per chunk).
  void reset_optimizer(Session& s);

  // Checkpoints one session / every changed one. No-ops without a checkpoint folder.
  // Collective over TP (the full tensors are assembled on every rank).
  void save(Session& s);
  void save_all();
  // Brings back every session saved in the checkpoint folder (up to max_sessions); returns
  // how many. Throws naming the file when one does not load.
  int64_t resume_all();
  // True when the checkpoint folder already holds sessions (a new server must not mix in).
  bool folder_has_sessions() const;

  bool persistent() const { return !options_.checkpoint_dir.empty(); }
  bool guarded() const { return guards_ != nullptr; }

 private:
  std::string folder_of(const std::string& id) const;
  std::string stream_identity(const std::string& id) const { return "tlm serve session " + id; }
  Session fresh(const std::string& id) const;
  Session load(const std::string& id, const std::string& folder);
  void evict_one(const std::string& keep);
  AdapterSnapshot live_copy() const;

  TrainableSet& trainable_;
  TestTimeLearner& learner_;
  CollapseGuards* guards_;
  CheckpointIdentity identity_;
  SessionStoreOptions options_;
  AdapterSnapshot initial_;
  const void* live_ = nullptr;  // the snapshot the live tensors hold
  std::map<std::string, Session> sessions_;
  uint64_t uses_ = 0;
  std::map<std::string, std::vector<std::string>> written_;  // per session, its files, oldest first
};

}  // namespace tlm
